"""One module per API group, as Adobe's reference groups them."""

from worker.adobe_pass.resources.configuration import ConfigurationResource
from worker.adobe_pass.resources.dcr import DcrResource
from worker.adobe_pass.resources.decisions import DecisionsResource
from worker.adobe_pass.resources.logout import LogoutResource
from worker.adobe_pass.resources.partner import PartnerResource
from worker.adobe_pass.resources.profiles import ProfilesResource
from worker.adobe_pass.resources.sessions import SessionsResource

__all__ = [
    "ConfigurationResource", "DcrResource", "DecisionsResource", "LogoutResource",
    "PartnerResource", "ProfilesResource", "SessionsResource",
]
