"""Read-only client for the NSX Manager: which VMs the endpoint protection (Guest Introspection) policy covers.

NSX-T / NSX (4.x), Policy API (paths and fields as in VMware's NSX Policy SDK 4.2.0 bindings):
``GET /policy/api/v1/infra/domains/endpoint-policies`` (every domain's endpoint policies), per policy
``GET .../domains/{domain}/endpoint-policies/{policy}/endpoint-rules`` (each rule's ``groups`` and
``service_profiles``), per group ``GET .../domains/{domain}/groups/{group}/members/virtual-machines`` (the
realized members; ``compute_ids`` carry ``instanceUuid:`` and ``biosUuid:``/``uuid:``). The realized members are
read rather than the tags a group's expression matches: they are what NSX enforces, nested groups included.

NSX-V (NSX for vSphere 6.x), XML API: ``GET /api/2.0/si/serviceprofiles`` (the Guest Introspection partner service
profiles), ``GET /api/2.0/si/serviceprofile/{id}/binding`` (the security groups bound to each), and
``GET /api/2.0/services/securitygroup/{id}/translation/virtualmachines`` (each group's VMs, by moref).

Only GET is sent, with Basic auth, connect and read timeouts and verified TLS (the inventory's CA bundle or the
system store, never REQUESTS_CA_BUNDLE). A redirect is refused (the credentials would follow it). Lists are read
with ``cursor``/``page_size`` until a page without a cursor; a repeated cursor, a page with a cursor but no
results, or more than ``max_items`` is an error, never an endless loop or a silently partial list.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any, Iterator
from urllib.parse import quote, urljoin, urlsplit

import requests

from .dsm import http_error, server_text
from .errors import AuthError, GatherError
from .neterrors import plain_reason
from .snapshot import NsxFacts, NsxGroup, NsxVm

POLICY = "/policy/api/v1"
ENDPOINT_POLICIES = f"{POLICY}/infra/domains/endpoint-policies"
MAX_ITEMS = 500_000  # per list; far above one manager's VMs, so reaching it means the server pages wrongly
GROUP_PATH = re.compile(r"^/infra/domains/([^/]+)/groups/([^/]+)$")
# compute_ids entries ("<key>:<value>") that carry each vSphere identity.
INSTANCE_KEYS, BIOS_KEYS = ("instanceUuid", "externalId"), ("biosUuid", "uuid")


@dataclass
class NsxClient:
    base_url: str
    user: str
    password: str
    verify: bool | str = True
    timeout_s: float = 30.0  # connect and read, each
    page_size: int = 1000
    max_items: int = MAX_ITEMS
    session: requests.Session = field(default_factory=requests.Session)
    calls: int = 0

    def __post_init__(self) -> None:
        # ~/.netrc would replace the Authorization header and REQUESTS_CA_BUNDLE the inventory's trust.
        self.session.trust_env = False
        self.session.proxies.update(requests.utils.get_environ_proxies(self.base_url))
        self.session.auth = (self.user, self.password)

    def get(self, path: str, params: dict[str, Any] | None = None, accept: str = "application/json") -> str:
        """One GET; the body as text. Any failure is one GatherError (AuthError for 401/403)."""
        self.calls += 1
        try:
            response = self.session.get(self.base_url + path, params=params, headers={"Accept": accept},
                                        timeout=(self.timeout_s, self.timeout_s), verify=self.verify,
                                        allow_redirects=False)
        except requests.RequestException as err:
            raise GatherError(f"GET {path}: {plain_reason(err)}") from None
        if 300 <= response.status_code < 400:
            target = urlsplit(urljoin(response.url, response.headers.get("Location", "")))
            raise GatherError(f"GET {path}: the NSX Manager answered {response.status_code} redirecting to "
                              f"{target.netloc.rpartition('@')[2] or '(no Location)'}: not followed (credentials "
                              f"are never sent to another host)")
        message = _error_message(response)
        if response.status_code in (401, 403):
            said = message or server_text(response)
            raise AuthError(f"authentication failed: the NSX Manager answered {response.status_code} to GET {path}"
                            f"{f': {said}' if said else ''} (check the user, its password and its role)")
        if response.status_code >= 400:
            host = urlsplit(response.url).netloc.rpartition("@")[2]
            raise GatherError(f"GET {path}: " + (f"HTTP {response.status_code} {response.reason} from {host}: {message}"
                                                 if message else http_error(response)))
        return response.text

    def get_json(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        text = self.get(path, params)
        try:
            data = json.loads(text)
        except ValueError:
            raise GatherError(f"GET {path}: the answer is not JSON") from None
        if not isinstance(data, dict):
            raise GatherError(f"GET {path}: expected a JSON object, got {type(data).__name__}")
        return data

    def list_all(self, path: str) -> Iterator[dict[str, Any]]:
        """Every ``results`` item of a Policy API list, page by page along ``cursor``."""
        cursor: str | None = None
        seen: set[str] = set()
        read = 0
        while True:
            params: dict[str, Any] = {"page_size": self.page_size, **({"cursor": cursor} if cursor else {})}
            page = self.get_json(path, params)
            results = page.get("results", [])
            if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
                raise GatherError(f"GET {path}: 'results' is not a list of objects")
            read += len(results)
            if read > self.max_items:
                raise GatherError(f"GET {path}: more than {self.max_items} items: stopped, the list is not complete")
            yield from results
            cursor = page.get("cursor")
            if cursor is None or cursor == "":
                _check_count(path, page.get("result_count"), read)
                return
            if not isinstance(cursor, str):
                raise GatherError(f"GET {path}: the cursor is not a string: {cursor!r}")
            if cursor in seen:
                raise GatherError(f"GET {path}: the NSX Manager returned cursor {cursor!r} again after {read} items "
                                  f"(it repeats a page): stopped, the list is not complete")
            if not results:
                raise GatherError(f"GET {path}: a page with no results but a cursor (no progress after {read} "
                                  f"items): stopped, the list is not complete")
            seen.add(cursor)


def _error_message(response: requests.Response) -> str | None:
    """NSX's own words for a failure: the error body's ``error_message`` (PolicyApiError), if there is one."""
    try:
        message = json.loads(response.text).get("error_message")
    except (ValueError, AttributeError):
        return None
    return " ".join(message.split()) if isinstance(message, str) and message.strip() else None


def _check_count(path: str, total: Any, read: int) -> None:
    """The last page's ``result_count`` is the list's size: fewer items read means pages were skipped."""
    if isinstance(total, int) and not isinstance(total, bool) and total != read:
        raise GatherError(f"GET {path}: read {read} items but the NSX Manager counts {total}: the list is not "
                          f"complete")


# -- NSX-T -------------------------------------------------------------------------------------------------


def _live(item: dict[str, Any]) -> bool:
    """An object marked for deletion no longer applies."""
    return item.get("marked_for_delete") is not True


def _identities(compute_ids: Any) -> tuple[str | None, str | None]:
    """(instance UUID, BIOS UUID) from compute_ids entries such as ``instanceUuid:5003…``, lower case."""
    values: dict[str, str] = {}
    for entry in compute_ids if isinstance(compute_ids, list) else []:
        if isinstance(entry, str) and ":" in entry:
            key, _, value = entry.partition(":")
            values.setdefault(key, value.strip().lower())
    instance = next((values[k] for k in INSTANCE_KEYS if values.get(k)), None)
    bios = next((values[k] for k in BIOS_KEYS if values.get(k)), None)
    return instance, bios


def _endpoint_groups(client: NsxClient, facts: NsxFacts) -> dict[str, NsxGroup]:
    """The groups every live endpoint rule applies to; a policy whose rules cannot be read is listed."""
    groups: dict[str, NsxGroup] = {}
    for policy in client.list_all(ENDPOINT_POLICIES):
        path = str(policy.get("path") or "")
        match = re.match(r"^/infra/domains/([^/]+)/endpoint-policies/([^/]+)$", path)
        if not _live(policy):
            continue
        if match is None:
            facts.unreadable.append(f"endpoint policy {policy.get('id')!r}: its path {path!r} is not "
                                    f"/infra/domains/<domain>/endpoint-policies/<id>")
            continue
        facts.policies.append(path)
        domain, pid = (quote(m, safe="") for m in match.groups())
        try:
            rules = [r for r in client.list_all(f"{POLICY}/infra/domains/{domain}/endpoint-policies/{pid}/"
                                                f"endpoint-rules") if _live(r)]
        except GatherError as err:
            facts.unreadable.append(f"endpoint rules of {path}: {err}")
            continue
        for rule in rules:
            rule_path = str(rule.get("path") or f"{path}/endpoint-rules/{rule.get('id')}")
            profiles = [p for p in rule.get("service_profiles") or [] if isinstance(p, str)]
            for group_path in rule.get("groups") or []:
                group = groups.setdefault(str(group_path), NsxGroup(
                    path=str(group_path), name=str(group_path).rsplit("/", 1)[-1], rules=[], service_profiles=[]))
                group.rules.append(rule_path)
                group.service_profiles += [p for p in profiles if p not in group.service_profiles]
    return groups


def read_nsxt(client: NsxClient, facts: NsxFacts) -> None:
    """Endpoint rules → their groups → each group's realized VM members, into ``facts``."""
    groups = _endpoint_groups(client, facts)
    vms: dict[str, NsxVm] = {}
    for group in groups.values():
        match = GROUP_PATH.match(group.path)
        if match is None:
            facts.unreadable.append(f"group {group.path!r} (rule {group.rules[0]}): not a "
                                    f"/infra/domains/<domain>/groups/<id> path, its members were not read")
            continue
        domain, gid = (quote(m, safe="") for m in match.groups())
        try:
            members = list(client.list_all(f"{POLICY}/infra/domains/{domain}/groups/{gid}/members/virtual-machines"))
        except GatherError as err:
            facts.unreadable.append(f"members of group {group.path}: {err}")
            continue
        group.members = len(members)
        for member in members:
            instance, bios = _identities(member.get("compute_ids"))
            vid, name = str(member.get("id") or ""), str(member.get("display_name") or member.get("id") or "?")
            if instance is None and bios is None:
                facts.unreadable.append(f"member {name!r} of group {group.path}: no instanceUuid or biosUuid in "
                                        f"compute_ids, it cannot be tied to a vCenter VM")
                continue
            vm = vms.setdefault(instance or bios or vid, NsxVm(id=vid, name=name, instance_uuid=instance,
                                                                bios_uuid=bios, groups=[]))
            vm.groups.append(group.path)
    facts.groups = sorted(groups.values(), key=lambda g: g.path)
    facts.vms = sorted(vms.values(), key=lambda v: (v.name, v.id))


# -- NSX-V -------------------------------------------------------------------------------------------------


def _xml(client: NsxClient, path: str) -> ET.Element:
    text = client.get(path, accept="application/xml")
    try:
        return ET.fromstring(text)
    except ET.ParseError as err:
        raise GatherError(f"GET {path}: the answer is not XML: {err}") from None


def read_nsxv(client: NsxClient, facts: NsxFacts) -> None:
    """Guest Introspection service profiles → the security groups bound to them → each group's VMs (morefs)."""
    groups: dict[str, NsxGroup] = {}
    for profile in _xml(client, "/api/2.0/si/serviceprofiles").iter("serviceProfile"):
        pid = profile.findtext("objectId") or ""
        if not pid:
            continue
        facts.policies.append(pid)
        try:
            binding = _xml(client, f"/api/2.0/si/serviceprofile/{quote(pid, safe='')}/binding")
        except GatherError as err:
            facts.unreadable.append(f"bindings of service profile {pid}: {err}")
            continue
        for sg in binding.iter("securityGroups"):
            for gid in [e.text or "" for e in sg.iter("string")] + [e.text or "" for e in sg.iter("objectId")]:
                if gid:
                    group = groups.setdefault(gid, NsxGroup(path=gid, name=gid, rules=[], service_profiles=[]))
                    group.rules.append(pid)
                    group.service_profiles.append(profile.findtext("name") or pid)
    vms: dict[str, NsxVm] = {}
    for group in groups.values():
        path = f"/api/2.0/services/securitygroup/{quote(group.path, safe='')}/translation/virtualmachines"
        try:
            nodes = list(_xml(client, path).iter("vmnode"))
        except GatherError as err:
            facts.unreadable.append(f"members of security group {group.path}: {err}")
            continue
        group.members = len(nodes)
        for node in nodes:
            moref = node.findtext("vmId") or ""
            vm = vms.setdefault(moref, NsxVm(id=moref, name=node.findtext("vmName") or moref, instance_uuid=None,
                                             bios_uuid=None, groups=[]))
            vm.groups.append(group.path)
    facts.groups = sorted(groups.values(), key=lambda g: g.path)
    facts.vms = sorted(vms.values(), key=lambda v: (v.name, v.id))
