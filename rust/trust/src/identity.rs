//! Node identities: an ed25519 key per node named by a SPIFFE-style ID
//! (`spiffe://<trust-domain>/mesh/node/<id>`), key files written with mode 0600, and the trust
//! bundle of known public keys. See `docs/trust.md` for how an SVID issued by SPIRE maps onto
//! this.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{corrupt, invalid, io, TrustError};
use crate::hash::{from_hex, to_hex, Enc, Hash32, Signature};

/// A node's name: `spiffe://<trust-domain>/mesh/node/<id>`. The trust domain is lowercase
/// letters, digits, `.`, `-`, `_`; the node id letters, digits, `.`, `-`, `_` (not `.`/`..`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct SpiffeId(String);

fn bad_id(id: &str, reason: impl Into<String>) -> TrustError {
    TrustError::BadSpiffeId {
        id: id.to_string(),
        reason: reason.into(),
    }
}

impl SpiffeId {
    /// The ID of node `node` in `trust_domain`.
    pub fn node(trust_domain: &str, node: &str) -> Result<Self, TrustError> {
        Self::parse(&format!("spiffe://{trust_domain}/mesh/node/{node}"))
    }

    /// Parses and checks an ID.
    pub fn parse(s: &str) -> Result<Self, TrustError> {
        let rest = s
            .strip_prefix("spiffe://")
            .ok_or_else(|| bad_id(s, "does not start with spiffe://"))?;
        let (domain, path) = rest
            .split_once('/')
            .ok_or_else(|| bad_id(s, "has no path"))?;
        if domain.is_empty() || domain.len() > 255 {
            return Err(bad_id(s, "empty or overlong trust domain"));
        }
        if !domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b))
        {
            return Err(bad_id(
                s,
                "trust domain may hold only a-z, 0-9, '.', '-', '_'",
            ));
        }
        let node = path
            .strip_prefix("mesh/node/")
            .ok_or_else(|| bad_id(s, "path is not /mesh/node/<id>"))?;
        if node.is_empty() || node == "." || node == ".." || node.len() > 128 {
            return Err(bad_id(s, "empty, dot or overlong node id"));
        }
        if !node
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        {
            return Err(bad_id(
                s,
                "node id may hold only letters, digits, '.', '-', '_'",
            ));
        }
        Ok(SpiffeId(s.to_string()))
    }

    /// The whole ID.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The trust domain (between `spiffe://` and the path).
    pub fn trust_domain(&self) -> &str {
        self.0["spiffe://".len()..].split('/').next().unwrap_or("")
    }

    /// The node id (the last path segment).
    pub fn node_id(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or("")
    }
}

impl std::fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for SpiffeId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SpiffeId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        SpiffeId::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// An ed25519 public key (32 bytes, hex in JSON).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PublicKey(pub(crate) VerifyingKey);

impl PublicKey {
    /// The key from its 32 bytes; fails on a point that is not a valid key.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, TrustError> {
        VerifyingKey::from_bytes(bytes)
            .map(PublicKey)
            .map_err(|_| invalid("public_key", "not a valid ed25519 point"))
    }

    /// The 32 bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Whether `signature` signs `payload` under `domain` with this key (strict verification:
    /// no malleable or small-order signatures).
    pub fn verify(&self, domain: &[u8], payload: &[u8], signature: &Signature) -> bool {
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        self.0
            .verify_strict(&signed_bytes(domain, payload), &sig)
            .is_ok()
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&to_hex(&self.to_bytes()))
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let v = from_hex(&s).ok_or_else(|| serde::de::Error::custom("public key is not hex"))?;
        let a: [u8; 32] = v
            .try_into()
            .map_err(|_| serde::de::Error::custom("public key is not 32 bytes"))?;
        PublicKey::from_bytes(&a).map_err(serde::de::Error::custom)
    }
}

/// A node's ID with its public key: one entry of a trust bundle.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct NodeKey {
    /// The node's SPIFFE ID.
    pub id: SpiffeId,
    /// Its ed25519 public key.
    pub public_key: PublicKey,
}

/// What a signature covers: the domain tag, then the payload (length-prefixed).
fn signed_bytes(domain: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut e = Enc::new(b"meshrl-signature-v1");
    e.bytes(domain).bytes(payload);
    e.0
}

/// A node's identity: its SPIFFE ID and ed25519 secret key.
pub struct Identity {
    id: SpiffeId,
    key: SigningKey,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Identity({}, {})",
            self.id,
            to_hex(&self.public_key().to_bytes())
        )
    }
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            id: self.id.clone(),
            key: SigningKey::from_bytes(&self.key.to_bytes()),
        }
    }
}

const KEY_FORMAT: &str = "meshrl-node-key 1";

#[derive(Serialize, Deserialize)]
struct KeyFile {
    format: String,
    spiffe_id: SpiffeId,
    public_key: String,
    secret_key: String,
}

impl Identity {
    /// A new identity with a key from the operating system's random source.
    pub fn generate(id: SpiffeId) -> Result<Self, TrustError> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret)
            .map_err(|e| invalid("randomness", format!("the OS random source failed: {e}")))?;
        Ok(Identity {
            id,
            key: SigningKey::from_bytes(&secret),
        })
    }

    /// A deterministic identity for simulations and tests: the key is SHA-256 of the seed and
    /// the ID. Never use it for a real node.
    pub fn from_seed(id: SpiffeId, seed: u64) -> Self {
        let mut e = Enc::new(b"meshrl-identity-from-seed-v1");
        e.u64(seed).str(id.as_str());
        Identity {
            key: SigningKey::from_bytes(&e.digest().0),
            id,
        }
    }

    /// The node's SPIFFE ID.
    pub fn id(&self) -> &SpiffeId {
        &self.id
    }

    /// The public half of the key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.key.verifying_key())
    }

    /// The entry this node contributes to a trust bundle.
    pub fn node_key(&self) -> NodeKey {
        NodeKey {
            id: self.id.clone(),
            public_key: self.public_key(),
        }
    }

    /// Signs `payload` under `domain` (which names what is signed, so a vote can never be
    /// replayed as a block).
    pub fn sign(&self, domain: &[u8], payload: &[u8]) -> Signature {
        Signature(self.key.sign(&signed_bytes(domain, payload)).to_bytes())
    }

    /// Writes the key file atomically with mode 0600 (a temporary in the same folder, synced,
    /// renamed). Refuses to overwrite an existing file.
    pub fn save(&self, path: &Path) -> Result<(), TrustError> {
        if path.exists() {
            return Err(io(
                path,
                std::io::Error::new(std::io::ErrorKind::AlreadyExists, "key file exists"),
            ));
        }
        let file = KeyFile {
            format: KEY_FORMAT.into(),
            spiffe_id: self.id.clone(),
            public_key: to_hex(&self.public_key().to_bytes()),
            secret_key: to_hex(&self.key.to_bytes()),
        };
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| invalid("key", e.to_string()))?;
        write_private(path, &bytes).map_err(|e| io(path, e))
    }

    /// Reads a key file written by [`Identity::save`]. Fails if others can read it, if it was
    /// edited (the public key must match the secret one) or is not a key file.
    pub fn load(path: &Path) -> Result<Self, TrustError> {
        let bytes = std::fs::read(path).map_err(|e| io(path, e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)
                .map_err(|e| io(path, e))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(TrustError::KeyFilePermissions {
                    path: path.to_path_buf(),
                    mode: mode & 0o777,
                });
            }
        }
        let file: KeyFile = serde_json::from_slice(&bytes)
            .map_err(|e| corrupt(path, format!("not a key file: {e}")))?;
        if file.format != KEY_FORMAT {
            return Err(corrupt(
                path,
                format!("format `{}`, expected `{KEY_FORMAT}`", file.format),
            ));
        }
        let secret: [u8; 32] = from_hex(&file.secret_key)
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| corrupt(path, "secret key is not 32 hex bytes"))?;
        let me = Identity {
            id: file.spiffe_id,
            key: SigningKey::from_bytes(&secret),
        };
        if to_hex(&me.public_key().to_bytes()) != file.public_key.to_ascii_lowercase() {
            return Err(corrupt(path, "public key does not match the secret key"));
        }
        Ok(me)
    }
}

/// Writes `bytes` to `path` atomically, created with mode 0600 before any byte is written.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let result = (|| {
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        std::fs::remove_file(&tmp).ok();
    }
    result
}

/// The public keys of every known node of one trust domain.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrustBundle {
    /// The trust domain every member belongs to.
    pub trust_domain: String,
    nodes: BTreeMap<SpiffeId, PublicKey>,
}

impl TrustBundle {
    /// An empty bundle for `trust_domain`.
    pub fn new(trust_domain: &str) -> Result<Self, TrustError> {
        SpiffeId::node(trust_domain, "probe")?;
        Ok(TrustBundle {
            trust_domain: trust_domain.to_string(),
            nodes: BTreeMap::new(),
        })
    }

    /// A bundle of these nodes' keys (all of one trust domain).
    pub fn from_keys(keys: impl IntoIterator<Item = NodeKey>) -> Result<Self, TrustError> {
        let mut b: Option<TrustBundle> = None;
        for k in keys {
            let bundle = match &mut b {
                Some(b) => b,
                None => b.insert(TrustBundle::new(k.id.trust_domain())?),
            };
            bundle.insert(k)?;
        }
        b.ok_or_else(|| invalid("keys", "no node keys"))
    }

    /// Adds (or replaces, for a key rotation) a node's key; the node must be of this domain.
    pub fn insert(&mut self, key: NodeKey) -> Result<(), TrustError> {
        if key.id.trust_domain() != self.trust_domain {
            return Err(bad_id(
                key.id.as_str(),
                format!("not in trust domain `{}`", self.trust_domain),
            ));
        }
        self.nodes.insert(key.id, key.public_key);
        Ok(())
    }

    /// The key of `id`, if known.
    pub fn key(&self, id: &SpiffeId) -> Option<&PublicKey> {
        self.nodes.get(id)
    }

    /// Every member, in ID order.
    pub fn nodes(&self) -> impl Iterator<Item = NodeKey> + '_ {
        self.nodes.iter().map(|(id, k)| NodeKey {
            id: id.clone(),
            public_key: *k,
        })
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the bundle has no member.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Checks that `id` is a member and signed `payload` under `domain`.
    pub fn verify(
        &self,
        id: &SpiffeId,
        domain: &[u8],
        payload: &[u8],
        signature: &Signature,
    ) -> Result<(), TrustError> {
        let key = self
            .key(id)
            .ok_or_else(|| TrustError::UnknownNode(id.to_string()))?;
        if key.verify(domain, payload, signature) {
            Ok(())
        } else {
            Err(TrustError::BadSignature {
                what: format!("a payload from {id}"),
            })
        }
    }

    /// SHA-256 over the members in ID order: names this bundle in a ledger.
    pub fn digest(&self) -> Hash32 {
        let mut e = Enc::new(b"meshrl-trust-bundle-v1");
        e.str(&self.trust_domain);
        for (id, k) in &self.nodes {
            e.str(id.as_str()).bytes(&k.to_bytes());
        }
        e.digest()
    }

    /// Writes the bundle as JSON (atomically).
    pub fn save(&self, path: &Path) -> Result<(), TrustError> {
        let bytes =
            serde_json::to_vec_pretty(self).map_err(|e| invalid("bundle", e.to_string()))?;
        crate::ledger::file::atomic_write(path, &bytes).map_err(|e| io(path, e))
    }

    /// Reads a bundle written by [`TrustBundle::save`].
    pub fn load(path: &Path) -> Result<Self, TrustError> {
        let bytes = std::fs::read(path).map_err(|e| io(path, e))?;
        let b: TrustBundle = serde_json::from_slice(&bytes)
            .map_err(|e| corrupt(path, format!("not a trust bundle: {e}")))?;
        if let Some(id) = b
            .nodes
            .keys()
            .find(|id| id.trust_domain() != b.trust_domain)
        {
            return Err(corrupt(
                path,
                format!("{id} is not in `{}`", b.trust_domain),
            ));
        }
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spiffe_ids_are_checked() {
        let id = SpiffeId::node("mesh.example", "n-7").unwrap();
        assert_eq!(id.as_str(), "spiffe://mesh.example/mesh/node/n-7");
        assert_eq!(id.trust_domain(), "mesh.example");
        assert_eq!(id.node_id(), "n-7");
        for bad in [
            "http://a/mesh/node/1",
            "spiffe://A/mesh/node/1",
            "spiffe://a/mesh/node/",
            "spiffe://a/mesh/node/..",
            "spiffe://a/other/1",
            "spiffe://a/mesh/node/x/y",
            "spiffe://a",
        ] {
            assert!(SpiffeId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn signatures_bind_domain_payload_and_key() {
        let a = Identity::from_seed(SpiffeId::node("t", "a").unwrap(), 1);
        let b = Identity::from_seed(SpiffeId::node("t", "b").unwrap(), 1);
        assert_ne!(a.public_key(), b.public_key(), "the ID is part of the seed");
        let s = a.sign(b"vote", b"payload");
        assert!(a.public_key().verify(b"vote", b"payload", &s));
        assert!(!a.public_key().verify(b"block", b"payload", &s));
        assert!(!a.public_key().verify(b"vote", b"payloaD", &s));
        assert!(!b.public_key().verify(b"vote", b"payload", &s));
        let bundle = TrustBundle::from_keys([a.node_key(), b.node_key()]).unwrap();
        assert!(bundle.verify(a.id(), b"vote", b"payload", &s).is_ok());
        assert!(matches!(
            bundle.verify(b.id(), b"vote", b"payload", &s),
            Err(TrustError::BadSignature { .. })
        ));
        let stranger = SpiffeId::node("t", "c").unwrap();
        assert!(matches!(
            bundle.verify(&stranger, b"vote", b"payload", &s),
            Err(TrustError::UnknownNode(_))
        ));
        let other_domain = Identity::from_seed(SpiffeId::node("u", "a").unwrap(), 1);
        assert!(bundle.clone().insert(other_domain.node_key()).is_err());
    }

    #[test]
    fn key_files_are_private_and_checked() {
        let dir = std::env::temp_dir().join(format!("meshrl-trust-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("node.key");
        std::fs::remove_file(&path).ok();
        let me = Identity::generate(SpiffeId::node("t", "a").unwrap()).unwrap();
        me.save(&path).unwrap();
        assert!(me.save(&path).is_err(), "overwrote a key file");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            let back = Identity::load(&path).unwrap();
            assert_eq!(back.public_key(), me.public_key());
            assert_eq!(back.id(), me.id());
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(
                Identity::load(&path),
                Err(TrustError::KeyFilePermissions { .. })
            ));
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        // An edited public key is caught.
        let text = std::fs::read_to_string(&path).unwrap();
        let other = Identity::generate(SpiffeId::node("t", "a").unwrap()).unwrap();
        let edited = text.replace(
            &to_hex(&me.public_key().to_bytes()),
            &to_hex(&other.public_key().to_bytes()),
        );
        std::fs::write(&path, edited).unwrap();
        assert!(matches!(
            Identity::load(&path),
            Err(TrustError::Corrupt { .. })
        ));
        std::fs::remove_dir_all(&dir).ok();
    }
}
