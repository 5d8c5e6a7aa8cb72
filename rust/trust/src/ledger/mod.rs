//! The model ledger: an append-only, hash-chained file of signed blocks (`GENESIS`,
//! `MODEL_UPDATE`, `CONSENSUS_PROOF`), weights stored by content hash beside it. Every append
//! is fsynced before it returns; opening cuts back a torn tail that was never acknowledged and
//! refuses a file whose acknowledged content changed. [`Ledger::verify`] and [`verify_file`]
//! check every block: framing checksums, the hash chain, every signature, every consensus
//! proof, the head anchor and the stored weights.

mod block;
mod demo;
pub(crate) mod file;
mod weights;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use block::{Block, BlockBody, Genesis, ModelUpdate, SetAside};
pub use demo::write_demo;
pub use weights::{decode_f32, encode_f32, weights_hash, WEIGHTS_TENSOR};

use crate::error::{corrupt, io, TrustError};
use crate::hash::Hash32;
use crate::identity::{Identity, TrustBundle};
use crate::pbft::{ConsensusProof, Value};
use crate::validators::ValidatorSet;
use file::{frame, head_path, scan, Head, MAGIC};

/// A model the ledger proves: its `MODEL_UPDATE` and the `CONSENSUS_PROOF` of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProvenModel {
    /// The round.
    pub round: u64,
    /// SHA-256 of the weights file.
    pub model_hash: Hash32,
    /// The index of the `MODEL_UPDATE` block.
    pub update_block: u64,
    /// The index of the `CONSENSUS_PROOF` block.
    pub proof_block: u64,
}

/// What [`Ledger::verify`] checked.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LedgerReport {
    /// Blocks, genesis included.
    pub blocks: u64,
    /// `MODEL_UPDATE` blocks.
    pub model_updates: u64,
    /// `CONSENSUS_PROOF` blocks.
    pub consensus_proofs: u64,
    /// The last block's hash.
    pub head: Hash32,
    /// The validator set's ID.
    pub validator_set: Hash32,
    /// Byzantine validators tolerated.
    pub f: usize,
    /// The latest proven model.
    pub latest_proven: Option<ProvenModel>,
    /// Whether a head file anchored the length (without it a cut at a block boundary cannot
    /// be told from a shorter ledger).
    pub anchored: bool,
    /// An interrupted append's bytes after the last block (cut on the next open), if any.
    pub torn_tail: Option<String>,
    /// Weights named by a `MODEL_UPDATE` but not stored here.
    pub missing_weights: Vec<Hash32>,
}

/// The ledger's rules, applied block by block.
struct Rules {
    bundle: TrustBundle,
    validators: ValidatorSet,
    last_update_round: u64,
    updates: BTreeMap<u64, (u64, Value)>,
    proven: BTreeMap<u64, ProvenModel>,
    model_updates: u64,
}

impl Rules {
    fn new(g: &Genesis) -> Result<Self, String> {
        let validators =
            ValidatorSet::from_bundle(&g.bundle, &g.validators).map_err(|e| e.to_string())?;
        Ok(Rules {
            bundle: g.bundle.clone(),
            validators,
            last_update_round: 0,
            updates: BTreeMap::new(),
            proven: BTreeMap::new(),
            model_updates: 0,
        })
    }

    /// Checks `b` against the rules, then records it (nothing is recorded on failure).
    fn apply(&mut self, b: &Block) -> Result<(), String> {
        match &b.body {
            BlockBody::Genesis(_) => Err("a second GENESIS block".into()),
            BlockBody::ModelUpdate(u) => {
                u.check(&self.bundle).map_err(|e| e.to_string())?;
                if u.round <= self.last_update_round {
                    return Err(format!(
                        "round {} after round {}: rounds must increase",
                        u.round, self.last_update_round
                    ));
                }
                self.last_update_round = u.round;
                self.updates.insert(u.round, (b.index, u.value()));
                self.model_updates += 1;
                Ok(())
            }
            BlockBody::ConsensusProof(p) => {
                p.verify(&self.validators).map_err(|e| e.to_string())?;
                let round = p.value.round;
                let Some(&(update_block, value)) = self.updates.get(&round) else {
                    return Err(format!("proves round {round}, which has no MODEL_UPDATE"));
                };
                if value != p.value {
                    return Err(format!(
                        "proves a value that is not round {round}'s MODEL_UPDATE"
                    ));
                }
                if self.proven.contains_key(&round) {
                    return Err(format!("round {round} is already proven"));
                }
                self.proven.insert(
                    round,
                    ProvenModel {
                        round,
                        model_hash: p.value.model_hash,
                        update_block,
                        proof_block: b.index,
                    },
                );
                Ok(())
            }
        }
    }
}

/// A ledger file read and checked.
struct Loaded {
    blocks: Vec<Block>,
    rules: Rules,
    good_len: u64,
    torn: Option<String>,
    head: Option<Head>,
}

fn load(path: &Path) -> Result<Loaded, TrustError> {
    let bytes = std::fs::read(path).map_err(|e| io(path, e))?;
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(corrupt(path, "not a meshrl ledger (bad magic)"));
    }
    let head = Head::read(&head_path(path)).map_err(|why| corrupt(&head_path(path), why))?;
    let s = scan(&bytes);
    let tampered = |block: u64, reason: String| TrustError::Tampered {
        path: path.to_path_buf(),
        block,
        reason,
    };
    let anchored = head.map_or(0, |h| h.count);
    if let Some((why, last)) = &s.defect {
        if !last || (s.records.len() as u64) < anchored {
            return Err(corrupt(
                path,
                format!("{why}; block {} onward is unreadable", s.records.len()),
            ));
        }
    }
    if (s.records.len() as u64) < anchored {
        return Err(corrupt(
            path,
            format!(
                "truncated: the head anchors {anchored} blocks, the file holds {}",
                s.records.len()
            ),
        ));
    }
    let mut blocks: Vec<Block> = Vec::with_capacity(s.records.len());
    let mut rules: Option<Rules> = None;
    for (i, (_, payload)) in s.records.iter().enumerate() {
        let i = i as u64;
        let b = Block::open(payload, rules.as_ref().map(|r| &r.bundle))
            .map_err(|why| tampered(i, why))?;
        let prev = blocks.last().map_or(Hash32::default(), |p| p.hash);
        if b.index != i {
            return Err(tampered(i, format!("says it is block {}", b.index)));
        }
        if b.prev != prev {
            return Err(tampered(i, "does not link to the previous block".into()));
        }
        match (&mut rules, &b.body) {
            (None, BlockBody::Genesis(g)) => {
                rules = Some(Rules::new(g).map_err(|w| tampered(i, w))?)
            }
            (None, _) => return Err(tampered(i, "the first block is not GENESIS".into())),
            (Some(r), _) => r.apply(&b).map_err(|w| tampered(i, w))?,
        }
        blocks.push(b);
    }
    let Some(rules) = rules else {
        return Err(corrupt(path, "no GENESIS block"));
    };
    if let Some(h) = head {
        if h.count == 0 || blocks[h.count as usize - 1].hash != h.hash {
            return Err(tampered(
                h.count.saturating_sub(1),
                "its hash is not the one the head file anchored".into(),
            ));
        }
    }
    Ok(Loaded {
        blocks,
        rules,
        good_len: s.good_len,
        torn: s.defect.map(|(why, _)| why),
        head,
    })
}

/// Checks a ledger file without changing it (a torn tail is reported, not cut).
pub fn verify_file(path: &Path) -> Result<LedgerReport, TrustError> {
    inspect(path).map(|(_, r)| r)
}

/// Reads and checks a ledger file without changing it: its blocks and the report.
pub fn inspect(path: &Path) -> Result<(Vec<Block>, LedgerReport), TrustError> {
    let l = load(path)?;
    let mut missing = Vec::new();
    for b in &l.blocks {
        if let BlockBody::ModelUpdate(u) = &b.body {
            match weights::get(path, &u.model_hash) {
                Ok(_) => {}
                Err(TrustError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    missing.push(u.model_hash)
                }
                Err(e) => return Err(e),
            }
        }
    }
    let report = LedgerReport {
        blocks: l.blocks.len() as u64,
        model_updates: l.rules.model_updates,
        consensus_proofs: l.rules.proven.len() as u64,
        head: l.blocks.last().map_or(Hash32::default(), |b| b.hash),
        validator_set: l.rules.validators.id(),
        f: l.rules.validators.f(),
        latest_proven: l.rules.proven.values().next_back().cloned(),
        anchored: l.head.is_some(),
        torn_tail: l.torn,
        missing_weights: missing,
    };
    Ok((l.blocks, report))
}

/// The weights of `model_hash` from the ledger at `path`, only if the ledger (checked whole,
/// read only) proves that model: what a node loads.
pub fn read_proven(path: &Path, model_hash: &Hash32) -> Result<Vec<u8>, TrustError> {
    let (blocks, _) = inspect(path)?;
    let proven = blocks.iter().any(
        |b| matches!(&b.body, BlockBody::ConsensusProof(p) if p.value.model_hash == *model_hash),
    );
    if !proven {
        return Err(TrustError::NotProven(model_hash.to_hex()));
    }
    weights::get(path, model_hash)
}

/// An open ledger (one writer at a time).
pub struct Ledger {
    path: PathBuf,
    file: File,
    head: File,
    blocks: Vec<Block>,
    rules: Rules,
    /// Set when an append failed half way: the handle refuses further appends.
    poisoned: bool,
}

impl Ledger {
    /// Creates a ledger at `path` whose genesis block, signed by `author` (a member of
    /// `genesis.bundle`), names the trust bundle and the validators. Fails if `path` exists.
    pub fn create(path: &Path, author: &Identity, genesis: Genesis) -> Result<Ledger, TrustError> {
        let rules = Rules::new(&genesis).map_err(TrustError::Rejected)?;
        check_author(&rules.bundle, author)?;
        let (block, payload) =
            Block::seal(0, Hash32::default(), author, BlockBody::Genesis(genesis))?;
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| io(path, e))?;
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&frame(&payload));
        bytes.extend_from_slice(&payload);
        file.write_all(&bytes).map_err(|e| io(path, e))?;
        file.sync_all().map_err(|e| io(path, e))?;
        file::sync_dir(path).map_err(|e| io(path, e))?;
        let hp = head_path(path);
        let head = open_head(&hp)?;
        Head {
            count: 1,
            hash: block.hash,
        }
        .write(&head)
        .map_err(|e| io(&hp, e))?;
        file::sync_dir(&hp).map_err(|e| io(&hp, e))?;
        Ok(Ledger {
            path: path.to_path_buf(),
            file,
            head,
            blocks: vec![block],
            rules,
            poisoned: false,
        })
    }

    /// Opens an existing ledger, checking every block. A torn tail left by an interrupted
    /// append (after everything acknowledged) is cut back; damage to acknowledged blocks is an
    /// error.
    pub fn open(path: &Path) -> Result<Ledger, TrustError> {
        let l = load(path)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| io(path, e))?;
        if l.torn.is_some() {
            file.set_len(l.good_len).map_err(|e| io(path, e))?;
            file.sync_all().map_err(|e| io(path, e))?;
        }
        let hp = head_path(path);
        let head = open_head(&hp)?;
        let count = l.blocks.len() as u64;
        let last = l.blocks.last().map_or(Hash32::default(), |b| b.hash);
        if l.head != Some(Head { count, hash: last }) {
            Head { count, hash: last }
                .write(&head)
                .map_err(|e| io(&hp, e))?;
        }
        let mut file = file;
        std::io::Seek::seek(&mut file, std::io::SeekFrom::End(0)).map_err(|e| io(path, e))?;
        Ok(Ledger {
            path: path.to_path_buf(),
            file,
            head,
            blocks: l.blocks,
            rules: l.rules,
            poisoned: false,
        })
    }

    /// Continues the ledger at `path` when it exists and begins with `genesis` (a resumed
    /// run), else creates it. A ledger whose genesis names other nodes or validators is
    /// [`TrustError::Mismatch`].
    pub fn open_or_create(path: &Path, author: &Identity, genesis: Genesis) -> Result<Ledger, TrustError> {
        if !path.exists() {
            return Ledger::create(path, author, genesis);
        }
        let ledger = Ledger::open(path)?;
        if ledger.blocks.first().map(|b| &b.body) != Some(&BlockBody::Genesis(genesis)) {
            return Err(TrustError::Mismatch {
                path: path.to_path_buf(),
                reason: "belongs to another run (its genesis names other nodes or validators)".into(),
            });
        }
        Ok(ledger)
    }

    /// Records a round: `update` and the validators' `proof` of it, unless the ledger already
    /// holds that round's update with the same value (a resumed run repeating it; a missing
    /// proof is then appended). Another update for the round is [`TrustError::Mismatch`].
    /// Returns the model's bytes as a node loads them (only a proven model is served).
    pub fn record_proven(
        &mut self,
        author: &Identity,
        update: ModelUpdate,
        proof: ConsensusProof,
    ) -> Result<Vec<u8>, TrustError> {
        let (round, value, model_hash) = (update.round, update.value(), update.model_hash);
        if proof.value != value {
            return Err(TrustError::InvalidProof(format!(
                "it proves round {} model {}, not round {round} model {model_hash}",
                proof.value.round, proof.value.model_hash
            )));
        }
        let recorded = self.blocks.iter().find_map(|b| match &b.body {
            BlockBody::ModelUpdate(u) if u.round == round => Some(u.value()),
            _ => None,
        });
        match recorded {
            None => {
                self.append_model_update(author, update)?;
            }
            Some(v) if v == value => {}
            Some(_) => {
                return Err(TrustError::Mismatch {
                    path: self.path.clone(),
                    reason: format!("holds a different round-{round} model than this run computes (another config or seed?)"),
                })
            }
        }
        if self.proven(round).is_none() {
            self.append_consensus_proof(author, proof)?;
        }
        self.load_proven(&model_hash)
    }

    /// Appends a round's global model, signed by `author`. Rounds must increase; every
    /// worker signature in `update` must verify.
    pub fn append_model_update(
        &mut self,
        author: &Identity,
        update: ModelUpdate,
    ) -> Result<&Block, TrustError> {
        self.append(author, BlockBody::ModelUpdate(update))
    }

    /// Appends the validators' proof of a `MODEL_UPDATE` already in the ledger.
    pub fn append_consensus_proof(
        &mut self,
        author: &Identity,
        proof: ConsensusProof,
    ) -> Result<&Block, TrustError> {
        self.append(author, BlockBody::ConsensusProof(proof))
    }

    fn append(&mut self, author: &Identity, body: BlockBody) -> Result<&Block, TrustError> {
        if self.poisoned {
            return Err(TrustError::Rejected(
                "an earlier append failed; reopen the ledger".into(),
            ));
        }
        check_author(&self.rules.bundle, author)?;
        let index = self.blocks.len() as u64;
        let prev = self.blocks.last().map_or(Hash32::default(), |b| b.hash);
        let (block, payload) = Block::seal(index, prev, author, body)?;
        self.rules.apply(&block).map_err(TrustError::Rejected)?;
        // Two writes: a kill between them leaves a torn tail, which open cuts back.
        let written = (|| {
            self.file.write_all(&frame(&payload))?;
            self.file.write_all(&payload)?;
            self.file.sync_data()
        })();
        let anchored = written.and_then(|()| {
            Head {
                count: index + 1,
                hash: block.hash,
            }
            .write(&self.head)
        });
        if let Err(e) = anchored {
            // Not acknowledged; the file may hold part of it, which the next open resolves.
            self.poisoned = true;
            self.rules = reload_rules(&self.blocks)?;
            return Err(io(&self.path, e));
        }
        self.blocks.push(block);
        Ok(self.blocks.last().expect("just pushed"))
    }

    /// Re-reads the file and checks everything ([`verify_file`]), and that it still holds
    /// every block this handle appended or read.
    pub fn verify(&self) -> Result<LedgerReport, TrustError> {
        let report = verify_file(&self.path)?;
        let head = self.blocks.last().map_or(Hash32::default(), |b| b.hash);
        if report.blocks < self.blocks.len() as u64 {
            return Err(corrupt(
                &self.path,
                format!(
                    "truncated: {} blocks on disk, {} written",
                    report.blocks,
                    self.blocks.len()
                ),
            ));
        }
        if report.blocks == self.blocks.len() as u64 && report.head != head {
            return Err(TrustError::Tampered {
                path: self.path.clone(),
                block: report.blocks - 1,
                reason: "the head changed on disk".into(),
            });
        }
        Ok(report)
    }

    /// Every block, in order.
    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }
    /// The path of the ledger file.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The trust bundle of the genesis block.
    pub fn bundle(&self) -> &TrustBundle {
        &self.rules.bundle
    }
    /// The validator set of the genesis block.
    pub fn validators(&self) -> &ValidatorSet {
        &self.rules.validators
    }
    /// The latest model with a consensus proof.
    pub fn latest_proven_model(&self) -> Option<&ProvenModel> {
        self.rules.proven.values().next_back()
    }
    /// The proven model of `round`, if any.
    pub fn proven(&self, round: u64) -> Option<&ProvenModel> {
        self.rules.proven.get(&round)
    }
    /// Whether some consensus proof in the ledger proves the model with this hash.
    pub fn is_proven(&self, model_hash: &Hash32) -> bool {
        self.rules
            .proven
            .values()
            .any(|p| p.model_hash == *model_hash)
    }

    /// Stores flat `f32` weights (see [`encode_f32`]); returns their content hash.
    pub fn put_weights(&self, weights: &[f32]) -> Result<Hash32, TrustError> {
        weights::put(&self.path, &encode_f32(weights)?)
    }
    /// Stores a safetensors file's bytes as they are; returns their content hash.
    pub fn put_safetensors(&self, bytes: &[u8]) -> Result<Hash32, TrustError> {
        weights::put(&self.path, bytes)
    }
    /// The stored safetensors bytes of `model_hash`, checked against the hash.
    pub fn weights(&self, model_hash: &Hash32) -> Result<Vec<u8>, TrustError> {
        weights::get(&self.path, model_hash)
    }
    /// The bytes of a model only if the ledger proves it: what a node loads.
    pub fn load_proven(&self, model_hash: &Hash32) -> Result<Vec<u8>, TrustError> {
        if !self.is_proven(model_hash) {
            return Err(TrustError::NotProven(model_hash.to_hex()));
        }
        self.weights(model_hash)
    }
}

fn check_author(bundle: &TrustBundle, author: &Identity) -> Result<(), TrustError> {
    match bundle.key(author.id()) {
        Some(k) if *k == author.public_key() => Ok(()),
        Some(_) => Err(TrustError::Rejected(format!(
            "{}'s key differs from the one in the genesis bundle",
            author.id()
        ))),
        None => Err(TrustError::UnknownNode(author.id().to_string())),
    }
}

fn open_head(path: &Path) -> Result<File, TrustError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| io(path, e))
}

fn reload_rules(blocks: &[Block]) -> Result<Rules, TrustError> {
    let Some(BlockBody::Genesis(g)) = blocks.first().map(|b| &b.body) else {
        return Err(TrustError::Rejected("no GENESIS block".into()));
    };
    let mut r = Rules::new(g).map_err(TrustError::Rejected)?;
    for b in &blocks[1..] {
        r.apply(b).map_err(TrustError::Rejected)?;
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pbft::{Message, SignedMessage};
    use crate::SpiffeId;

    #[test]
    fn a_block_with_a_bad_proof_fails_verify_even_when_its_author_signed_it() {
        let dir = std::env::temp_dir().join(format!("meshrl-ledger-unit-{}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("l.bin");
        let vals: Vec<Identity> = (0..4)
            .map(|i| Identity::from_seed(SpiffeId::node("t", &format!("v{i}")).unwrap(), 0))
            .collect();
        let author = Identity::from_seed(SpiffeId::node("t", "c").unwrap(), 0);
        let bundle =
            TrustBundle::from_keys(vals.iter().chain([&author]).map(|i| i.node_key())).unwrap();
        let genesis = Genesis {
            bundle,
            validators: vals.iter().map(|v| v.id().clone()).collect(),
        };
        let mut l = Ledger::create(&path, &author, genesis).unwrap();
        let update = ModelUpdate {
            round: 1,
            model_hash: l.put_weights(&[1.0, 2.0]).unwrap(),
            rule: "fedavg".into(),
            participants: vec![],
            set_aside: vec![],
            epsilon: None,
            updates: vec![],
        };
        let value = update.value();
        l.append_model_update(&author, update).unwrap();
        let set = l.validators().clone();
        let mut commits: Vec<SignedMessage> = (0..3u32)
            .map(|i| {
                let m = Message::Commit {
                    view: 0,
                    seq: 1,
                    digest: value.digest(),
                };
                SignedMessage::sign(&vals[i as usize], &set, i, m)
            })
            .collect();
        commits[1].signature.0[0] ^= 1;
        let proof = ConsensusProof {
            validator_set: set.id(),
            view: 0,
            seq: 1,
            value,
            commits,
        };
        // The writer refuses it; written by hand with a valid author signature, verify does.
        assert!(l.append_consensus_proof(&author, proof.clone()).is_err());
        let prev = l.blocks().last().unwrap().hash;
        let (block, payload) =
            Block::seal(2, prev, &author, BlockBody::ConsensusProof(proof)).unwrap();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&frame(&payload)).unwrap();
        f.write_all(&payload).unwrap();
        Head {
            count: 3,
            hash: block.hash,
        }
        .write(&l.head)
        .unwrap();
        let e = verify_file(&path).unwrap_err();
        assert!(matches!(e, TrustError::Tampered { block: 2, .. }), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
