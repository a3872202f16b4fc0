"""JWT bearer tokens: an HS256 secret, or an OpenID Connect provider's signing keys (its JWKS).

PyJWT does the cryptography and the claim checks. The algorithms are fixed per key source (HS256
for the secret; RS256/ES256 for JWKS keys), so `alg=none` and a public key used as an HMAC secret
are refused. Fetching the JWKS (and the provider's discovery document) is blocking I/O: `verify`
runs in a thread.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from dataclasses import dataclass
from typing import Any

import jwt

from aijobs import errors
from aijobs.settings import Settings

SECRET_ALGORITHMS = ["HS256"]
JWKS_ALGORITHMS = ["RS256", "ES256"]
JWKS_LIFESPAN_SECONDS = 300.0  # a fetched key set is used this long before it is fetched again
FETCH_TIMEOUT_SECONDS = 5.0
LEEWAY_SECONDS = 5  # clock skew allowed on exp and nbf
TOKEN_PRINCIPAL_PREFIX = "sub:"  # a token's principal, never the same as a key's (key:NAME)


@dataclass(frozen=True)
class TokenIdentity:
    principal: str
    admin: bool


class TokenVerifier:
    def __init__(self, settings: Settings) -> None:
        self.secret = settings.jwt_secret
        self.issuer = settings.oidc_issuer.rstrip("/") or None
        self.audience = settings.jwt_audience or None
        self.admin_claim, _, self.admin_value = settings.jwt_admin_claim.partition("=")
        self._jwks_url = settings.jwt_jwks_url
        self._refresh_seconds = settings.jwt_jwks_refresh_seconds
        self._jwks: jwt.PyJWKClient | None = None
        self._lock = threading.Lock()

    @property
    def uses_keys(self) -> bool:
        return bool(self._jwks_url or self.issuer)

    def verify(self, token: str) -> TokenIdentity:
        """The token's principal and role; errors.Unauthorized when it is not valid."""
        try:
            claims = self._claims(token)
        except jwt.PyJWKClientConnectionError as exc:
            raise errors.StoreUnavailable(
                f"the token issuer's keys cannot be fetched: {exc}"
            ) from exc
        except jwt.PyJWTError as exc:
            raise errors.Unauthorized(f"invalid token: {exc}") from exc
        return TokenIdentity(TOKEN_PRINCIPAL_PREFIX + str(claims["sub"]), self._is_admin(claims))

    def _claims(self, token: str) -> dict[str, Any]:
        header = jwt.get_unverified_header(token)
        key: Any
        if header.get("alg") in SECRET_ALGORITHMS and self.secret:
            key, algorithms = self.secret, SECRET_ALGORITHMS
        elif self.uses_keys:
            key, algorithms = self._key_set().get_signing_key_from_jwt(token), JWKS_ALGORITHMS
        else:
            raise jwt.InvalidAlgorithmError(f"algorithm {header.get('alg')!r} is not accepted")
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=algorithms,
            audience=self.audience,
            issuer=self.issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "sub"], "verify_aud": self.audience is not None},
        )
        return claims

    def _is_admin(self, claims: dict[str, Any]) -> bool:
        held = claims.get(self.admin_claim)
        values = held.split() if isinstance(held, str) else held
        return isinstance(values, list) and self.admin_value in values

    def _key_set(self) -> jwt.PyJWKClient:
        with self._lock:
            if self._jwks is None:
                self._jwks = jwt.PyJWKClient(
                    self._jwks_url or self._discover_jwks_url(),
                    cache_jwk_set=True,
                    lifespan=JWKS_LIFESPAN_SECONDS,
                    timeout=FETCH_TIMEOUT_SECONDS,
                    cooldown_duration=self._refresh_seconds,
                )
            return self._jwks

    def _discover_jwks_url(self) -> str:
        """The issuer's jwks_uri, from its OpenID Connect discovery document."""
        url = f"{self.issuer}/.well-known/openid-configuration"
        try:
            with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_SECONDS) as answer:
                document = json.load(answer)
        except (OSError, ValueError) as exc:
            raise jwt.PyJWKClientConnectionError(f"discovery at {url} failed: {exc}") from exc
        if not isinstance(document, dict) or document.get("issuer", "").rstrip("/") != self.issuer:
            raise jwt.PyJWKClientConnectionError(f"{url} does not describe issuer {self.issuer}")
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise jwt.PyJWKClientConnectionError(f"{url} names no jwks_uri")
        return jwks_uri
