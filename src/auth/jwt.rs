//! Access tokens: signed JWTs, HS256 with a configured secret or EdDSA (Ed25519) with keys kept
//! in the database and published as a JWK set.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine};
use chrono::{DateTime, Utc};
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::domain::StoredSigningKey;

/// Clock leeway allowed when checking `exp` and `iat`, in seconds.
pub const LEEWAY_SECS: u64 = 5;
/// Longer strings are refused before any parsing: no real access token comes near this.
const MAX_TOKEN_LEN: usize = 4096;
const HS256_KID: &str = "hs256";

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The user's id.
    pub sub: Uuid,
    pub username: String,
    /// The session (login) this token belongs to; revoking it revokes the token.
    pub sid: Uuid,
    pub iat: i64,
    pub exp: i64,
    pub jti: Uuid,
    pub iss: String,
    pub aud: String,
}

/// Why a presented access token was refused. Deliberately coarse: the client learns only
/// that the token is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the access token has expired")]
    Expired,
    #[error("the access token is invalid")]
    Invalid,
}

struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

/// Access tokens that passed full verification, with their claims, so that a client
/// presenting the same token on every request pays for the signature check once. A hit still
/// checks `exp` against the caller's clock; the key set is fixed for the life of a
/// [`TokenKeys`]. Bounded: when full it is emptied, which costs one verification per live
/// token. (A plain map rather than a cache crate with per-entry expiry: moka measured slower
/// on `GET /users/me`, see BENCHMARKS.md, and expiry needs no eviction here, since every hit
/// checks `exp`.)
#[derive(Default)]
struct VerifiedTokens(Mutex<HashMap<Box<str>, Arc<AccessClaims>>>);

/// Most tokens kept verified; each entry is one token and its claims, a few hundred bytes.
const VERIFIED_CAPACITY: usize = 16_384;

impl VerifiedTokens {
    fn get(&self, token: &str) -> Option<Arc<AccessClaims>> {
        self.0.lock().ok()?.get(token).cloned()
    }

    fn insert(&self, token: &str, claims: Arc<AccessClaims>) {
        if let Ok(mut map) = self.0.lock() {
            if map.len() >= VERIFIED_CAPACITY {
                map.clear();
            }
            map.insert(token.into(), claims);
        }
    }
}

/// The keys that sign new access tokens and verify presented ones.
pub struct TokenKeys {
    verified: VerifiedTokens,
    signing_kid: String,
    signing_alg: Algorithm,
    signer: EncodingKey,
    /// The active Ed25519 key, parsed once (see [`TokenKeys::sign`]); `None` for HS256.
    ed25519_signer: Option<Box<ed25519_dalek::SigningKey>>,
    verifiers: HashMap<String, Verifier>,
    jwks: serde_json::Value,
    issuer: String,
    audience: String,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("signing_kid", &self.signing_kid)
            .field("signing_alg", &self.signing_alg)
            .field("verifying_kids", &self.verifiers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl TokenKeys {
    /// HS256 with a shared secret (already checked to be at least 32 bytes).
    pub fn hs256(secret: &[u8], issuer: &str, audience: &str) -> Self {
        let verifier = Verifier {
            key: DecodingKey::from_secret(secret),
            validation: validation(Algorithm::HS256, issuer, audience),
        };
        Self {
            verified: VerifiedTokens::default(),
            signing_kid: HS256_KID.to_owned(),
            signing_alg: Algorithm::HS256,
            signer: EncodingKey::from_secret(secret),
            ed25519_signer: None,
            verifiers: HashMap::from([(HS256_KID.to_owned(), verifier)]),
            // A symmetric secret is never published.
            jwks: json!({ "keys": [] }),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        }
    }

    /// EdDSA with stored Ed25519 keys: the active one signs, all of them verify.
    pub fn ed25519(
        stored: &[StoredSigningKey],
        issuer: &str,
        audience: &str,
    ) -> anyhow::Result<Self> {
        let active = stored
            .iter()
            .find(|k| k.active)
            .ok_or_else(|| anyhow::anyhow!("no active signing key"))?;
        // Checked here, at start, rather than at the first signature.
        let private = ed25519_dalek::SigningKey::from_pkcs8_der(&active.private_key)
            .map_err(|e| anyhow::anyhow!("decoding the Ed25519 signing key {}: {e}", active.kid))?;
        anyhow::ensure!(
            private.verifying_key().as_bytes()[..] == active.public_key[..],
            "signing key {} does not match its public key",
            active.kid
        );
        let mut verifiers = HashMap::new();
        let mut jwks = Vec::new();
        for key in stored {
            anyhow::ensure!(
                key.algorithm == "EdDSA",
                "unsupported signing key algorithm {}",
                key.algorithm
            );
            anyhow::ensure!(
                key.public_key.len() == 32,
                "signing key {} has a malformed public key",
                key.kid
            );
            verifiers.insert(
                key.kid.clone(),
                Verifier {
                    key: DecodingKey::from_ed_der(&key.public_key),
                    validation: validation(Algorithm::EdDSA, issuer, audience),
                },
            );
            jwks.push(json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "x": B64.encode(&key.public_key),
                "kid": key.kid,
                "alg": "EdDSA",
                "use": "sig",
            }));
        }
        Ok(Self {
            verified: VerifiedTokens::default(),
            signing_kid: active.kid.clone(),
            signing_alg: Algorithm::EdDSA,
            signer: EncodingKey::from_ed_der(&active.private_key),
            ed25519_signer: Some(Box::new(private)),
            verifiers,
            jwks: json!({ "keys": jwks }),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        })
    }

    /// A new random Ed25519 key, ready to store. Its `kid` is the RFC 7638 JWK thumbprint.
    pub fn generate_ed25519(now: DateTime<Utc>) -> anyhow::Result<StoredSigningKey> {
        let key = ed25519_dalek::SigningKey::generate(&mut OsRng);
        let public = key.verifying_key().to_bytes();
        let private = key
            .to_pkcs8_der()
            .map_err(|e| anyhow::anyhow!("encoding an Ed25519 key: {e}"))?;
        Ok(StoredSigningKey {
            kid: thumbprint(&public),
            algorithm: "EdDSA".to_owned(),
            private_key: private.as_bytes().to_vec(),
            sealed: false,
            public_key: public.to_vec(),
            active: true,
            created_at: now,
            retired_at: None,
        })
    }

    /// Whether `other` signs with the same key and verifies with the same ones.
    pub fn same_keys_as(&self, other: &TokenKeys) -> bool {
        self.signing_kid == other.signing_kid
            && self.verifiers.len() == other.verifiers.len()
            && self
                .verifiers
                .keys()
                .all(|kid| other.verifiers.contains_key(kid))
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The `kid` of the key that signs new tokens.
    pub fn signing_kid(&self) -> &str {
        &self.signing_kid
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    pub fn algorithm(&self) -> Algorithm {
        self.signing_alg
    }

    /// The public keys as a JWK set (`{"keys": []}` for HS256).
    pub fn jwks(&self) -> &serde_json::Value {
        &self.jwks
    }

    /// Signs claims with the active key, naming it in the `kid` header.
    ///
    /// An Ed25519 token is signed with the key parsed at load: `jsonwebtoken::encode` parses
    /// the PKCS#8 document and derives the public key again on every call, a scalar
    /// multiplication as costly as the signature itself. The token is the same either way
    /// (Ed25519 signatures are deterministic; a test compares the two byte for byte).
    pub fn sign(&self, claims: &AccessClaims) -> anyhow::Result<String> {
        let mut header = Header::new(self.signing_alg);
        header.kid = Some(self.signing_kid.clone());
        match &self.ed25519_signer {
            // The key parsed at load, rather than `jsonwebtoken::encode`, which parses it and
            // derives its public half on every call (BENCHMARKS.md, ledger).
            Some(key) => sign_ed25519(key, &header, claims),
            _ => Ok(jsonwebtoken::encode(&header, claims, &self.signer)?),
        }
    }

    /// Verifies a token: the key named by `kid`, that key's algorithm only, the signature,
    /// `exp` and `iat` (with [`LEEWAY_SECS`]), `iss` and `aud`.
    pub fn verify(&self, token: &str, now: i64) -> Result<Arc<AccessClaims>, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Invalid);
        }
        if let Some(claims) = self.verified.get(token) {
            if claims.exp + (LEEWAY_SECS as i64) < now {
                return Err(TokenError::Expired);
            }
            return Ok(claims);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        let verifier = header
            .kid
            .as_deref()
            .and_then(|kid| self.verifiers.get(kid))
            .ok_or(TokenError::Invalid)?;
        // `decode` also refuses an algorithm outside `validation.algorithms`; checking here
        // keeps `alg: none` and algorithm confusion out before any key is used.
        if !verifier.validation.algorithms.contains(&header.alg) {
            return Err(TokenError::Invalid);
        }
        let data = jsonwebtoken::decode::<AccessClaims>(token, &verifier.key, &verifier.validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?;
        if data.claims.iat > now + LEEWAY_SECS as i64 {
            return Err(TokenError::Invalid);
        }
        let claims = Arc::new(data.claims);
        self.verified.insert(token, claims.clone());
        Ok(claims)
    }
}

fn validation(alg: Algorithm, issuer: &str, audience: &str) -> Validation {
    let mut v = Validation::new(alg);
    v.leeway = LEEWAY_SECS;
    v.validate_exp = true;
    v.validate_nbf = false;
    v.set_issuer(&[issuer]);
    v.set_audience(&[audience]);
    v.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    v
}

/// RFC 7638 thumbprint of an Ed25519 public key (RFC 8037 §2 members, in lexical order).
fn thumbprint(public: &[u8]) -> String {
    let canonical = format!(
        r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
        B64.encode(public)
    );
    B64.encode(Sha256::digest(canonical.as_bytes()))
}

/// The JWS compact serialization (RFC 7515 §7.1) of `claims` under `header`, signed with
/// `key`: what `jsonwebtoken::encode` writes, without parsing the key again.
fn sign_ed25519(
    key: &ed25519_dalek::SigningKey,
    header: &Header,
    claims: &AccessClaims,
) -> anyhow::Result<String> {
    use ed25519_dalek::Signer as _;
    let mut token = B64.encode(serde_json::to_vec(header)?);
    token.push('.');
    B64.encode_string(serde_json::to_vec(claims)?, &mut token);
    let signature = key.sign(token.as_bytes());
    token.push('.');
    B64.encode_string(signature.to_bytes(), &mut token);
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test";

    fn claims(now: i64, ttl: i64) -> AccessClaims {
        AccessClaims {
            sub: Uuid::new_v4(),
            username: "alice".into(),
            sid: Uuid::new_v4(),
            iat: now,
            exp: now + ttl,
            jti: Uuid::new_v4(),
            iss: "authd".into(),
            aud: "authd".into(),
        }
    }

    fn ed_keys() -> TokenKeys {
        let key = TokenKeys::generate_ed25519(Utc::now()).unwrap();
        TokenKeys::ed25519(&[key], "authd", "authd").unwrap()
    }

    fn now() -> i64 {
        Utc::now().timestamp()
    }

    #[test]
    fn round_trips_with_both_algorithms() {
        for keys in [TokenKeys::hs256(SECRET, "authd", "authd"), ed_keys()] {
            let c = claims(now(), 60);
            let token = keys.sign(&c).unwrap();
            assert_eq!(*keys.verify(&token, now()).unwrap(), c);
            let header = jsonwebtoken::decode_header(&token).unwrap();
            assert_eq!(header.alg, keys.algorithm());
            assert!(header.kid.is_some());
        }
    }

    #[test]
    fn expired_tokens_are_refused_after_the_leeway() {
        let keys = TokenKeys::hs256(SECRET, "authd", "authd");
        let t = now();
        let token = keys.sign(&claims(t - 100, 90)).unwrap(); // expired 10 s ago
        assert_eq!(keys.verify(&token, t), Err(TokenError::Expired));
        let token = keys.sign(&claims(t - 100, 97)).unwrap(); // expired 3 s ago: within leeway
        assert!(keys.verify(&token, t).is_ok());
    }

    #[test]
    fn a_verified_token_still_expires() {
        let keys = ed_keys();
        let t = now();
        let token = keys.sign(&claims(t, 60)).unwrap();
        assert!(keys.verify(&token, t).is_ok());
        assert!(keys.verify(&token, t + 30).is_ok(), "from the cache");
        assert_eq!(
            keys.verify(&token, t + 60 + LEEWAY_SECS as i64 + 1),
            Err(TokenError::Expired)
        );
        // A tampered copy is not the cached string: it is verified, and refused.
        let tampered = format!("{token}x");
        assert_eq!(keys.verify(&tampered, t), Err(TokenError::Invalid));
    }

    #[test]
    fn future_iat_is_refused() {
        let keys = TokenKeys::hs256(SECRET, "authd", "authd");
        let token = keys.sign(&claims(now() + 60, 60)).unwrap();
        assert_eq!(keys.verify(&token, now()), Err(TokenError::Invalid));
    }

    #[test]
    fn wrong_issuer_audience_or_key_is_refused() {
        let keys = TokenKeys::hs256(SECRET, "authd", "authd");
        for other in [
            TokenKeys::hs256(SECRET, "someone-else", "authd"),
            TokenKeys::hs256(SECRET, "authd", "another-api"),
            TokenKeys::hs256(b"another-secret-another-secret-xx", "authd", "authd"),
        ] {
            let mut c = claims(now(), 60);
            c.iss = other.issuer().into();
            c.aud = other.audience().into();
            let token = other.sign(&c).unwrap();
            assert_eq!(keys.verify(&token, now()), Err(TokenError::Invalid));
        }
        let ed = ed_keys();
        let token = ed_keys().sign(&claims(now(), 60)).unwrap();
        assert_eq!(
            ed.verify(&token, now()),
            Err(TokenError::Invalid),
            "another Ed25519 key"
        );
    }

    #[test]
    fn alg_none_and_tampering_are_refused() {
        let keys = TokenKeys::hs256(SECRET, "authd", "authd");
        let token = keys.sign(&claims(now(), 60)).unwrap();
        let parts: Vec<&str> = token.split('.').collect();

        let none_header = B64.encode(br#"{"alg":"none","typ":"JWT","kid":"hs256"}"#);
        assert_eq!(
            keys.verify(&format!("{none_header}.{}.", parts[1]), now()),
            Err(TokenError::Invalid)
        );

        let mut forged = claims(now(), 60);
        forged.username = "admin".into();
        let forged_payload = B64.encode(serde_json::to_vec(&forged).unwrap());
        let tampered = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
        assert_eq!(keys.verify(&tampered, now()), Err(TokenError::Invalid));

        for garbage in ["", "a.b", "a.b.c", "....", &"x".repeat(5000)] {
            assert_eq!(
                keys.verify(garbage, now()),
                Err(TokenError::Invalid),
                "{garbage}"
            );
        }
    }

    #[test]
    fn algorithm_confusion_is_refused() {
        // An HS256 token "signed" with the Ed25519 public key must not pass an EdDSA verifier.
        let stored = TokenKeys::generate_ed25519(Utc::now()).unwrap();
        let ed = TokenKeys::ed25519(std::slice::from_ref(&stored), "authd", "authd").unwrap();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(stored.kid.clone());
        let token = jsonwebtoken::encode(
            &header,
            &claims(now(), 60),
            &EncodingKey::from_secret(&stored.public_key),
        )
        .unwrap();
        assert_eq!(ed.verify(&token, now()), Err(TokenError::Invalid));
    }

    #[test]
    fn jwks_publishes_only_public_ed25519_keys() {
        let stored = TokenKeys::generate_ed25519(Utc::now()).unwrap();
        let keys = TokenKeys::ed25519(std::slice::from_ref(&stored), "authd", "authd").unwrap();
        let jwk = &keys.jwks()["keys"][0];
        assert_eq!(jwk["kty"], "OKP");
        assert_eq!(jwk["crv"], "Ed25519");
        assert_eq!(jwk["kid"], stored.kid.as_str());
        assert_eq!(
            B64.decode(jwk["x"].as_str().unwrap()).unwrap(),
            stored.public_key
        );
        assert!(jwk.get("d").is_none());
        assert_eq!(
            TokenKeys::hs256(SECRET, "a", "b").jwks()["keys"]
                .as_array()
                .unwrap()
                .len(),
            0
        );
    }

    proptest::proptest! {
        #[test]
        fn ed25519_tokens_match_jsonwebtoken_byte_for_byte(
            username in "\\PC{0,32}",
            iat in 0i64..4_000_000_000,
            ttl in 1i64..100_000,
        ) {
            let keys = ed_keys();
            let mut c = claims(iat, ttl);
            c.username = username;
            let mut header = Header::new(Algorithm::EdDSA);
            header.kid = Some(keys.signing_kid.clone());
            let reference = jsonwebtoken::encode(&header, &c, &keys.signer).unwrap();
            proptest::prop_assert_eq!(keys.sign(&c).unwrap(), reference);
        }

        #[test]
        fn verify_never_panics_on_arbitrary_input(raw in "\\PC{0,300}") {
            let keys = TokenKeys::hs256(SECRET, "authd", "authd");
            proptest::prop_assert!(keys.verify(&raw, now()).is_err());
        }

        #[test]
        fn verify_never_panics_on_jwt_shaped_input(
            header in proptest::collection::vec(proptest::num::u8::ANY, 0..80),
            payload in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
            signature in "[A-Za-z0-9_-]{0,90}",
        ) {
            let token = format!("{}.{}.{signature}", B64.encode(header), B64.encode(payload));
            let keys = ed_keys();
            proptest::prop_assert!(keys.verify(&token, now()).is_err());
        }
    }
}
