"""An identity provider's keys for production-mode tests: an ES256 key and its JWKS file."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.ops.config import AuthSettings

KID = "test-2026"
_KEY = ec.generate_private_key(ec.SECP256R1())
_JWK = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(_KEY.public_key()))
JWKS_FILE = Path(tempfile.mkdtemp(prefix="gongji-jwks-")) / "jwks.json"
JWKS_FILE.write_text(json.dumps({"keys": [{**_JWK, "kid": KID, "use": "sig", "alg": "ES256"}]}))
SECRET = "a-production-secret-of-at-least-32-bytes"  # signs kinship vouchers
AUTH = AuthSettings(secret=SECRET, jwks_file=JWKS_FILE)


def provider_token(cert_no: str, auth: AuthSettings = AUTH, **claims: Any) -> str:
    """A token as the production identity provider would sign it."""
    now = int(time.time())
    payload = {
        "sub": cert_no,
        "iss": auth.issuer,
        "aud": auth.audience,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        **claims,
    }
    return jwt.encode(payload, _KEY, algorithm="ES256", headers={"kid": KID})
