"""Who may call each route: one declaration per route, applied before anything else and documented.

Every route names its rule first among its dependencies, and its router is made with
``route_class=RoleRoute``::

    router = APIRouter(prefix="/v1", route_class=RoleRoute)

    @router.get("/departments", dependencies=[PUBLIC])
    @router.post("/departments", dependencies=[allow("gis_staff")])

``RoleRoute`` applies the rule before the request's body is read or its parameters are checked, so a
stranger learns nothing from a request (not even whether it was well formed) and cannot make the service
read a large upload: no key, or an unknown, revoked or expired one, is 401; a key whose role the rule
does not list is 403. It also writes the rule into the OpenAPI document: ``x-roles`` on the operation
(an empty list: public), a "Roles:" line in its description, and the API key security schemes with the
roles as their OpenAPI 3.1 role list. tests/api/test_access_table.py walks every route with every role
and checks the answers against these declarations.

A rule says who may call a route at all. Finer rules that depend on the data stay in the services and
are checked again there: which step of the case loop a role may take, which plan a field worker may see.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request, Response, Security
from fastapi import params as fastapi_params
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader, APIKeyQuery
from starlette.concurrency import run_in_threadpool

from gridsvc.api.problems import problem
from gridsvc.errors import AuthenticationError, GridsvcError, PermissionDeniedError
from gridsvc.services import access
from gridsvc.services.access import Principal
from gridsvc.services.rate_limit import RateLimitedError, TokenBuckets, retry_after_seconds

ROLES: tuple[str, ...] = access.ROLES

# Where the admitted caller is kept for the rest of the request (``Caller`` in deps.py reads it), and the
# mark that the gate has run (it runs once, whether from RoleRoute or from the rule's dependency).
ADMITTED = "gridsvc.admitted"
GATED = "gridsvc.gated"

API_KEY_HEADER = APIKeyHeader(
    name="X-API-Key",
    scheme_name="X-API-Key",
    description="An API key (`gridsvc keys create --role ROLE --name NAME`); `Authorization: Bearer KEY` "
    "works too.",
    auto_error=False,
)
API_KEY_QUERY = APIKeyQuery(
    name="api_key",
    scheme_name="api_key",
    description="The API key in the query, only where clients cannot set headers (tile loaders, QGIS); "
    "a header wins over it.",
    auto_error=False,
)

Refusal = Callable[[Request, GridsvcError], Response]


@dataclass(frozen=True)
class RateLimit:
    """A route's token buckets: the Settings fields giving the requests a minute per key and per address."""

    per_key_setting: str
    per_address_setting: str


@dataclass(frozen=True)
class RoleRule:
    """Who may call a route, and where the key may come from.

    ``roles`` empty: anyone, without a key (a key, if sent, is not even looked at). ``only_when``
    (path parameter, values): the roles apply only when that parameter is one of the values, and the
    route is public otherwise (a key that is sent must still be valid). ``key_in_query``: ``?api_key=``
    as well as the headers. ``key_in_form``: the key may be the ``api_key`` field of a form body (Open311
    POST); the gate cannot see it without reading the body, so the handler reads the form (bounded) and
    calls :func:`admit_key` before it looks at any field. ``rate_limit``: token buckets per client
    address (before the key is looked up) and per key. ``refusal`` answers a refused request in the
    route's own error format instead of problem+json.
    """

    roles: tuple[str, ...]
    key_in_query: bool = False
    key_in_form: bool = False
    only_when: tuple[str, frozenset[str]] | None = None
    rate_limit: RateLimit | None = None
    refusal: Refusal | None = None

    @property
    def public(self) -> bool:
        """Anyone may call the route, without a key."""
        return not self.roles

    def guards(self, path_params: Mapping[str, Any]) -> bool:
        """Whether the roles apply to a request with these path parameters."""
        if self.public:
            return False
        if self.only_when is None:
            return True
        name, values = self.only_when
        return str(path_params.get(name)) in values

    def check(self, principal: Principal) -> None:
        """PermissionDeniedError unless the caller's role is one of the rule's."""
        if principal.role not in self.roles:
            raise PermissionDeniedError(
                f"this needs the role {' or '.join(self.roles)}; the API key {principal.name!r} is "
                f"{principal.role}"
            )

    def describe(self) -> str:
        """The rule in a sentence, for the route's OpenAPI description."""
        if self.public:
            return "**Roles**: public, no API key needed."
        where = ["the `X-API-Key` header"]
        if self.key_in_query:
            where.append("the `api_key` query parameter")
        if self.key_in_form:
            where.insert(0, "the `api_key` form field")
        text = f"**Roles**: {', '.join(f'`{r}`' for r in self.roles)}; the key in {' or '.join(where)}."
        if self.only_when is not None:
            name, values = self.only_when
            text += f" Only for {name} {', '.join(sorted(values))}; public otherwise."
        return text

    def openapi(self) -> dict[str, Any]:
        """The operation's OpenAPI extensions."""
        extra: dict[str, Any] = {"x-roles": list(self.roles)}
        if self.only_when is not None:
            name, values = self.only_when
            extra["x-roles-only-when"] = {name: sorted(values)}
        return extra


_RULE_ATTRIBUTE = "gridsvc_role_rule"


def allow(
    *roles: str,
    key_in_query: bool = False,
    key_in_form: bool = False,
    only_when: tuple[str, frozenset[str]] | None = None,
    rate_limit: RateLimit | None = None,
    refusal: Refusal | None = None,
) -> fastapi_params.Depends:
    """The declaration of a route's rule, for its ``dependencies``: these roles may call it."""
    unknown = sorted(set(roles) - set(ROLES))
    if unknown or not roles:
        raise ValueError(f"allow() takes one or more of {', '.join(ROLES)}, not {unknown or 'none'}")
    return _declare(
        RoleRule(
            tuple(roles),
            key_in_query=key_in_query,
            key_in_form=key_in_form,
            only_when=only_when,
            rate_limit=rate_limit,
            refusal=refusal,
        )
    )


def _declare(rule: RoleRule) -> fastapi_params.Depends:
    # The dependency applies the rule too, in case a route is declared on a router that is not made with
    # RoleRoute: then the rule holds after the body is read instead of before, but it holds.
    if rule.public:

        async def public() -> None:
            """Nothing to check."""

        setattr(public, _RULE_ATTRIBUTE, rule)
        declared: fastapi_params.Depends = Depends(public)
        return declared

    async def by_header(request: Request, _key: Annotated[str | None, Security(API_KEY_HEADER)]) -> None:
        await admit(request, rule)

    async def by_header_or_query(
        request: Request,
        _key: Annotated[str | None, Security(API_KEY_HEADER)],
        _query_key: Annotated[str | None, Security(API_KEY_QUERY)],
    ) -> None:
        await admit(request, rule)

    enforce = by_header_or_query if rule.key_in_query else by_header
    setattr(enforce, _RULE_ATTRIBUTE, rule)
    # Security(...) with the roles as scopes: OpenAPI 3.1 lists them with the key schemes (§4.8.30).
    secured: fastapi_params.Depends = Security(enforce, scopes=list(rule.roles))
    return secured


PUBLIC = _declare(RoleRule(()))
"""The declaration of a public route: anyone, no key."""


def rule_of(route: Any) -> RoleRule | None:
    """The rule a route declares among its dependencies, or None."""
    for dependency in getattr(route, "dependencies", None) or ():
        rule = getattr(dependency.dependency, _RULE_ATTRIBUTE, None)
        if isinstance(rule, RoleRule):
            return rule
    return None


def raw_key(request: Request, *, in_query: bool = False) -> str | None:
    """The key a request carries: X-API-Key, else Authorization: Bearer, else (``in_query``) ?api_key=."""
    key = request.headers.get("x-api-key")
    if key is None:
        authorization = request.headers.get("authorization")
        if authorization is not None and authorization[:7].lower() == "bearer ":
            key = authorization[7:]
    if key is None and in_query:
        key = request.query_params.get("api_key")
    return key


async def authenticate(request: Request, key: str | None) -> Principal:
    """The caller behind ``key``: from the process's key cache on the event loop when it is there, else
    from the database in a worker thread."""
    sessions = request.app.state.sessions
    timezone = request.app.state.settings.timezone
    if not key or not key.strip():
        return access.authenticate(sessions, key, timezone=timezone)  # raises at once: no key, no query
    remembered = access.cached_principal(sessions, key, timezone=timezone)
    if remembered is not None:
        return remembered
    principal: Principal = await run_in_threadpool(access.authenticate, sessions, key, timezone=timezone)
    return principal


def client_address(request: Request) -> str:
    """The client's address: the socket peer, or what a trusted proxy says (GRIDSVC_TRUSTED_PROXIES,
    applied by the server before the request reaches the app: see `gridsvc serve`)."""
    return request.client.host if request.client else "unknown"


_buckets_lock = threading.Lock()


def _take(request: Request, setting: str, caller: str) -> None:
    """Spend a token of ``caller`` from the app's buckets for ``setting``; RateLimitedError when empty."""
    state = request.app.state
    with _buckets_lock:
        all_buckets: dict[str, TokenBuckets] | None = getattr(state, "rate_limits", None)
        if all_buckets is None:
            all_buckets = state.rate_limits = {}
        buckets = all_buckets.get(setting)
        if buckets is None:
            buckets = all_buckets[setting] = TokenBuckets(int(getattr(state.settings, setting)))
    wait = buckets.take(caller)
    if wait > 0:
        seconds = retry_after_seconds(wait)
        limit = setting.removeprefix("open311_post_").replace("_", " ")
        raise RateLimitedError(
            f"too many requests ({buckets.per_minute} {limit}): try again in {seconds} s", retry_after=seconds
        )


async def admit(request: Request, rule: RoleRule) -> Principal | None:
    """Apply ``rule`` to the request (once): the caller it admits, None on a public route without a key
    (and on a ``key_in_form`` route, whose handler admits the key with :func:`admit_key`).

    Order: the per-address rate limit (before a key is even looked up), the key, the role, the per-key
    rate limit.
    """
    if GATED in request.scope:
        admitted: Principal | None = request.scope.get(ADMITTED)
        return admitted
    request.scope[GATED] = True
    if rule.rate_limit is not None:
        _take(request, rule.rate_limit.per_address_setting, f"address:{client_address(request)}")
    if rule.public or rule.key_in_form:
        return None
    key = raw_key(request, in_query=rule.key_in_query)
    if rule.guards(request.path_params):
        principal: Principal | None = await _admit_key(request, rule, key)
    elif key is not None:  # public here, but a key that is sent must be one
        principal = await authenticate(request, key)
    else:
        principal = None
    request.scope[ADMITTED] = principal
    return principal


async def _admit_key(request: Request, rule: RoleRule, key: str | None) -> Principal:
    principal = await authenticate(request, key)
    rule.check(principal)
    if rule.rate_limit is not None:
        _take(request, rule.rate_limit.per_key_setting, f"key:{principal.api_key_id}")
    request.scope[ADMITTED] = principal
    return principal


async def admit_key(request: Request, key: str | None) -> Principal:
    """Admit the key a ``key_in_form`` route's handler found in its form (or URL, or header): the key, the
    role and the per-key rate limit of the route's rule; AuthenticationError, PermissionDeniedError or
    RateLimitedError otherwise. Call it before looking at any other field."""
    rule = rule_of(request.scope.get("route"))
    if rule is None or not rule.key_in_form:
        raise RuntimeError("admit_key is for routes declared with allow(..., key_in_form=True)")
    await admit(request, rule)  # the per-address limit, when no gate ran before (a plain APIRoute)
    if not key or not key.strip():
        raise AuthenticationError(f"api_key is required: a key with the role {' or '.join(rule.roles)}")
    return await _admit_key(request, rule, key)


def _refused(request: Request, rule: RoleRule, exc: GridsvcError) -> Response | None:
    """The answer to a refused request when the route has its own format or it is a rate limit."""
    if rule.refusal is not None:
        return rule.refusal(request, exc)
    if isinstance(exc, RateLimitedError):
        return problem(
            request,
            429,
            exc.title,
            exc.detail,
            kind="too-many-requests",
            headers={"Retry-After": str(exc.retry_after)},
        )
    return None


def _refusals(rule: RoleRule) -> dict[int | str, dict[str, Any]]:
    """The answers a rule adds to a route's documented responses (the route's own descriptions win)."""
    answers: dict[int | str, dict[str, Any]] = {}
    if not rule.public and rule.refusal is None:
        answers[401] = {"description": "no API key, or an unknown, revoked or expired one"}
    if not rule.public:
        answers[403] = {"description": f"the key's role is not {' or '.join(rule.roles)}"}
    if rule.rate_limit is not None:
        answers[429] = {"description": "too many requests from this key or this address: see Retry-After"}
    return answers


class RoleRoute(APIRoute):
    """An APIRoute that applies its declared RoleRule before anything else, and documents it."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        rule = rule_of(self)
        if rule is not None:
            self.openapi_extra = {**(self.openapi_extra or {}), **rule.openapi()}
            self.description = f"{self.description}\n\n{rule.describe()}".strip()
            documented = {str(status) for status in self.responses}
            self.responses = {
                **self.responses,
                **{
                    status: answer
                    for status, answer in _refusals(rule).items()
                    if str(status) not in documented
                },
            }

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The route's handler behind the rule's gate."""
        handler = super().get_route_handler()
        rule = rule_of(self)
        if rule is None:
            return handler

        async def gated(request: Request) -> Response:
            try:
                await admit(request, rule)
            except (AuthenticationError, PermissionDeniedError, RateLimitedError) as exc:
                answer = _refused(request, rule, exc)
                if answer is None:
                    raise  # problem+json, by the app's handlers
                return answer
            return await handler(request)

        return gated
