//! The audit trail's format: hash-chained rows of encrypted records,
//! signed checkpoints, and the verifier that names what was tampered with.
//!
//! * A row is `seq ‖ session ‖ prev ‖ payload`, where `prev` is the link
//!   hash of the row before and `payload` is the record, sealed with
//!   AES-256-GCM under its session's key (AAD names the row's position).
//! * A session key comes from X25519 between a per-session key and the
//!   audit public key, so records can be written while sealed and read only
//!   by whoever holds the audit private key (wrapped by the root key).
//! * Checkpoints sign `(seq, head hash, time)` with Ed25519, so the chain
//!   can be verified offline with the public key alone, and truncation
//!   below a checkpoint shows.

use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, X25519};
use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::encoding::{AsBigEndian, Curve25519SeedBin};
use aws_lc_rs::hkdf;
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey as SigPublicKey};

use crate::{Error, Key256, Plaintext, aead};

const LINK_DOMAIN: &[u8] = b"coffer/audit/link/v1";
const CHECKPOINT_DOMAIN: &[u8] = b"coffer/audit/checkpoint/v1";
const RECORD_DOMAIN: &[u8] = b"coffer/audit/record/v1";

pub type Hash = [u8; 32];

/// One stored row of the trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub seq: u64,
    pub session: u32,
    pub prev: Hash,
    pub payload: Vec<u8>,
}

impl Row {
    /// The hash the next row must carry as `prev`.
    pub fn link(&self) -> Hash {
        let mut m = Vec::with_capacity(LINK_DOMAIN.len() + 44 + self.payload.len());
        m.extend_from_slice(LINK_DOMAIN);
        m.extend_from_slice(&self.seq.to_be_bytes());
        m.extend_from_slice(&self.session.to_be_bytes());
        m.extend_from_slice(&self.prev);
        m.extend_from_slice(&self.payload);
        let d = digest(&SHA256, &m);
        let mut h = [0u8; 32];
        h.copy_from_slice(d.as_ref());
        h
    }
}

/// A signed statement that the chain up to `seq` ends in `head`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: u64,
    pub head: Hash,
    pub time: i64,
    pub signature: Vec<u8>,
}

fn checkpoint_message(seq: u64, head: &Hash, time: i64) -> Vec<u8> {
    let mut m = CHECKPOINT_DOMAIN.to_vec();
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(head);
    m.extend_from_slice(&time.to_be_bytes());
    m
}

/// The Ed25519 key that signs checkpoints; its seed is stored wrapped.
pub struct Signer(Ed25519KeyPair);

impl Signer {
    pub fn generate() -> Result<(Self, Plaintext), Error> {
        let seed = crate::rand::bytes(32)?;
        let s = Self::from_seed(&seed)?;
        Ok((s, Plaintext::new(seed)))
    }

    pub fn from_seed(seed: &[u8]) -> Result<Self, Error> {
        Ed25519KeyPair::from_seed_unchecked(seed)
            .map(Signer)
            .map_err(|_| Error::DecryptionFailed)
    }

    pub fn public_key(&self) -> Vec<u8> {
        self.0.public_key().as_ref().to_vec()
    }

    pub fn checkpoint(&self, seq: u64, head: Hash, time: i64) -> Checkpoint {
        let signature = self.0.sign(&checkpoint_message(seq, &head, time)).as_ref().to_vec();
        Checkpoint {
            seq,
            head,
            time,
            signature,
        }
    }
}

pub fn checkpoint_is_signed_by(c: &Checkpoint, public_key: &[u8]) -> bool {
    SigPublicKey::new(&ED25519, public_key)
        .verify(&checkpoint_message(c.seq, &c.head, c.time), &c.signature)
        .is_ok()
}

/// The audit encryption key pair (X25519); the private half is stored wrapped.
pub struct RecordKeyPair {
    private: PrivateKey,
}

impl RecordKeyPair {
    pub fn generate() -> Result<(Self, Plaintext), Error> {
        let private = PrivateKey::generate(&X25519).map_err(|_| Error::Random)?;
        let raw: Curve25519SeedBin<'static> = private.as_be_bytes().map_err(|_| Error::Random)?;
        let bytes = Plaintext::new(raw.as_ref().to_vec());
        Ok((RecordKeyPair { private }, bytes))
    }

    pub fn from_private(bytes: &[u8]) -> Result<Self, Error> {
        let private = PrivateKey::from_private_key(&X25519, bytes).map_err(|_| Error::DecryptionFailed)?;
        Ok(RecordKeyPair { private })
    }

    pub fn public_key(&self) -> Result<Vec<u8>, Error> {
        Ok(self
            .private
            .compute_public_key()
            .map_err(|_| Error::DecryptionFailed)?
            .as_ref()
            .to_vec())
    }

    /// The key of a session started with `session_public`.
    /// `node` is the writer's, for sessions that bind it (None: sessions from before).
    pub fn session_key(&self, session_public: &[u8], node: Option<&str>) -> Result<Key256, Error> {
        let audit_public = self.public_key()?;
        derive(&self.private, session_public, session_public, &audit_public, node)
    }
}

/// Starts a session of writer `node` against the audit public key: returns
/// the session's public key (to store beside it) and the key that seals its
/// records. The node is bound into the key, so the session row's node name
/// cannot be changed without its records failing to open.
pub fn start_session(audit_public: &[u8], node: &str) -> Result<(Vec<u8>, Key256), Error> {
    let eph = PrivateKey::generate(&X25519).map_err(|_| Error::Random)?;
    let eph_public = eph.compute_public_key().map_err(|_| Error::Random)?.as_ref().to_vec();
    let key = derive(&eph, audit_public, &eph_public, audit_public, Some(node))?;
    Ok((eph_public, key))
}

fn derive(
    mine: &PrivateKey,
    peer: &[u8],
    session_public: &[u8],
    audit_public: &[u8],
    node: Option<&str>,
) -> Result<Key256, Error> {
    struct Len;
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            32
        }
    }
    let mut salt = session_public.to_vec();
    salt.extend_from_slice(audit_public);
    agreement::agree(
        mine,
        UnparsedPublicKey::new(&X25519, peer),
        Error::DecryptionFailed,
        |shared| {
            let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &salt).extract(shared);
            let node_len = (node.map_or(0, str::len) as u64).to_be_bytes();
            let info: Vec<&[u8]> = match node {
                None => vec![b"coffer audit record key v1"],
                Some(n) => vec![b"coffer audit record key v2", &node_len, n.as_bytes()],
            };
            let okm = prk.expand(&info, Len).map_err(|_| Error::DecryptionFailed)?;
            let mut k = [0u8; 32];
            okm.fill(&mut k).map_err(|_| Error::DecryptionFailed)?;
            let key = Key256::from_bytes(k);
            zeroize::Zeroize::zeroize(&mut k);
            Ok(key)
        },
    )
}

fn record_aad(seq: u64, session: u32) -> Vec<u8> {
    let mut a = RECORD_DOMAIN.to_vec();
    a.extend_from_slice(&seq.to_be_bytes());
    a.extend_from_slice(&session.to_be_bytes());
    a
}

/// Seals a record under its session's key (prepared once per batch, as are the nonces).
pub fn seal_record(
    cipher: &aead::Cipher,
    nonces: &mut aead::Nonces,
    seq: u64,
    session: u32,
    record: &[u8],
) -> Result<Vec<u8>, Error> {
    cipher.seal(nonces, &record_aad(seq, session), record)
}

pub fn open_record(key: &Key256, row: &Row) -> Result<Plaintext, Error> {
    aead::open(key, &record_aad(row.seq, row.session), &row.payload)
}

/// What `verify` found wrong first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tamper {
    Edited,
    Deleted,
    Reordered,
    Inserted,
    Truncated,
    /// A checkpoint whose signature does not verify.
    ForgedCheckpoint,
    /// A chained record that does not decrypt under its session's key: the
    /// session was altered, or the record was written with another key.
    /// Found only with the audit private key (`sys/audit/verify`).
    Unreadable,
}

impl Tamper {
    pub fn as_str(self) -> &'static str {
        match self {
            Tamper::Edited => "edited",
            Tamper::Deleted => "deleted",
            Tamper::Reordered => "reordered",
            Tamper::Inserted => "inserted",
            Tamper::Truncated => "truncated",
            Tamper::ForgedCheckpoint => "forged checkpoint",
            Tamper::Unreadable => "unreadable",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub seq: u64,
    pub kind: Tamper,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub records: u64,
    pub checkpoints: u64,
    /// Rows after the last checkpoint (written while sealed, or in flight at a crash).
    pub unsigned_tail: u64,
    pub finding: Option<Finding>,
}

/// What verifying needs of a row, without its payload: a trail of millions
/// of rows is checked in a fraction of its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Linked {
    pub seq: u64,
    pub prev: Hash,
    /// [`Row::link`].
    pub link: Hash,
}

impl From<&Row> for Linked {
    fn from(r: &Row) -> Self {
        Linked {
            seq: r.seq,
            prev: r.prev,
            link: r.link(),
        }
    }
}

/// Checks rows (in `seq` order as stored) and checkpoints (any order).
pub fn verify(rows: &[Row], checkpoints: &[Checkpoint], public_key: &[u8]) -> Report {
    let linked: Vec<Linked> = rows.iter().map(Linked::from).collect();
    verify_linked(&linked, checkpoints, public_key)
}

/// [`verify`] on rows already reduced to their links.
pub fn verify_linked(rows: &[Linked], checkpoints: &[Checkpoint], public_key: &[u8]) -> Report {
    let mut report = Report {
        records: rows.len() as u64,
        checkpoints: checkpoints.len() as u64,
        unsigned_tail: 0,
        finding: None,
    };
    let found = |seq, kind| Some(Finding { seq, kind });
    for c in checkpoints {
        if !checkpoint_is_signed_by(c, public_key) {
            report.finding = found(c.seq, Tamper::ForgedCheckpoint);
            return report;
        }
    }
    let links: Vec<Hash> = rows.iter().map(|r| r.link).collect();
    report.finding = chain_finding(rows, &links);
    if report.finding.is_some() {
        return report;
    }
    let first = rows.first().map_or(1, |r| r.seq);
    let last = rows.last().map_or(0, |r| r.seq);
    let mut sorted: Vec<&Checkpoint> = checkpoints.iter().collect();
    sorted.sort_by_key(|c| c.seq);
    for c in &sorted {
        if c.seq > last {
            report.finding = found(last + 1, Tamper::Truncated);
            return report;
        }
        let Some(idx) = c.seq.checked_sub(first) else {
            // Signs rows that are gone: the first kept row is reported below.
            continue;
        };
        let idx = idx as usize;
        if links.get(idx) != Some(&c.head) {
            report.finding = found(c.seq, Tamper::Edited);
            return report;
        }
    }
    report.unsigned_tail = last.saturating_sub(sorted.last().map_or(first.saturating_sub(1), |c| c.seq));
    if let Some(r) = rows.first() {
        // The chain starts at 1 from nothing; nothing prunes the trail, so a
        // missing head is a deletion even where a checkpoint signed it.
        if r.seq != 1 {
            report.finding = found(1, Tamper::Deleted);
        } else if r.prev != [0; 32] {
            report.finding = found(1, Tamper::Edited);
        }
    }
    report
}

fn chain_finding(rows: &[Linked], links: &[Hash]) -> Option<Finding> {
    for j in 1..rows.len() {
        let (prev_row, row) = (&rows[j - 1], &rows[j]);
        if row.seq != prev_row.seq + 1 {
            return Some(Finding {
                seq: prev_row.seq + 1,
                kind: Tamper::Deleted,
            });
        }
        if row.prev == links[j - 1] {
            continue;
        }
        // The row points at the one before its predecessor: the predecessor was inserted.
        if j >= 2 && row.prev == links[j - 2] {
            return Some(Finding {
                seq: prev_row.seq,
                kind: Tamper::Inserted,
            });
        }
        // The row points at a row elsewhere: rows were moved.
        if links.iter().enumerate().any(|(k, l)| k != j - 1 && *l == row.prev) {
            return Some(Finding {
                seq: row.seq,
                kind: Tamper::Reordered,
            });
        }
        // The predecessor is properly linked but hashes differently now: its content changed.
        // (Without the key, an edit of this row's `prev` alone looks the same; the earlier row is named.)
        if j < 2 || prev_row.prev == links[j - 2] {
            return Some(Finding {
                seq: prev_row.seq,
                kind: Tamper::Edited,
            });
        }
        return Some(Finding {
            seq: row.seq,
            kind: Tamper::Edited,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: u64) -> Vec<Row> {
        let mut rows: Vec<Row> = Vec::new();
        let mut prev = [0u8; 32];
        for seq in 1..=n {
            let r = Row {
                seq,
                session: 1,
                prev,
                payload: format!("record {seq}").into_bytes(),
            };
            prev = r.link();
            rows.push(r);
        }
        rows
    }

    fn signed(rows: &[Row], signer: &Signer, at: &[u64]) -> Vec<Checkpoint> {
        at.iter()
            .map(|s| signer.checkpoint(*s, rows[(*s - 1) as usize].link(), 100))
            .collect()
    }

    fn check(rows: &[Row], cps: &[Checkpoint], pk: &[u8]) -> Option<(u64, &'static str)> {
        verify(rows, cps, pk).finding.map(|f| (f.seq, f.kind.as_str()))
    }

    #[test]
    fn intact_chain_verifies_and_counts_the_unsigned_tail() {
        let (signer, _) = Signer::generate().unwrap();
        let rows = chain(10);
        let cps = signed(&rows, &signer, &[4, 8]);
        let r = verify(&rows, &cps, &signer.public_key());
        assert_eq!(r.finding, None);
        assert_eq!((r.records, r.checkpoints, r.unsigned_tail), (10, 2, 2));
    }

    #[test]
    fn each_kind_of_tampering_is_named() {
        let (signer, _) = Signer::generate().unwrap();
        let pk = signer.public_key();
        let rows = chain(10);
        let cps = signed(&rows, &signer, &[10]);

        let mut edited = rows.clone();
        edited[4].payload[0] ^= 1;
        assert_eq!(check(&edited, &cps, &pk), Some((5, "edited")));

        let mut deleted = rows.clone();
        deleted.remove(6);
        assert_eq!(check(&deleted, &cps, &pk), Some((7, "deleted")));

        let mut reordered = rows.clone();
        let (a, b) = (reordered[2].clone(), reordered[6].clone());
        reordered[2] = Row { seq: 3, ..b };
        reordered[6] = Row { seq: 7, ..a };
        assert_eq!(check(&reordered, &cps, &pk), Some((3, "reordered")));

        let mut inserted = rows.clone();
        let fake = Row {
            seq: 4,
            session: 1,
            prev: inserted[2].link(),
            payload: b"forged".to_vec(),
        };
        inserted.insert(3, fake);
        for (i, r) in inserted.iter_mut().enumerate().skip(4) {
            r.seq = i as u64 + 1;
        }
        assert_eq!(check(&inserted, &cps, &pk), Some((4, "inserted")));

        let truncated = rows[..7].to_vec();
        assert_eq!(check(&truncated, &cps, &pk), Some((8, "truncated")));

        let mut forged = cps.clone();
        forged[0].head[0] ^= 1;
        assert_eq!(check(&rows, &forged, &pk), Some((10, "forged checkpoint")));

        let mut last_edited = rows.clone();
        last_edited[9].payload.push(0);
        assert_eq!(check(&last_edited, &cps, &pk), Some((10, "edited")));

        let head_cut = rows[2..].to_vec();
        assert_eq!(check(&head_cut, &[], &pk), Some((1, "deleted")));
        // A checkpoint past the cut says nothing of the rows before it.
        assert_eq!(check(&head_cut, &cps, &pk), Some((1, "deleted")));
        let early = signed(&rows, &signer, &[2, 10]);
        assert_eq!(
            check(&head_cut, &early, &pk),
            Some((1, "deleted")),
            "cut at a signed head"
        );
        let mut first_edited = rows.clone();
        first_edited[0].prev[0] = 1;
        assert_eq!(check(&first_edited, &[], &pk), Some((1, "edited")));
    }

    #[test]
    fn records_open_only_with_the_audit_private_key_and_at_their_position() {
        let (pair, private) = RecordKeyPair::generate().unwrap();
        let public = pair.public_key().unwrap();
        let (session_public, writer_key) = start_session(&public, "node-a").unwrap();
        let cipher = aead::Cipher::new(aead::Algorithm::Aes256Gcm, &writer_key);
        let payload = seal_record(&cipher, &mut aead::Nonces::new(1), 7, 2, b"{\"op\":\"decrypt\"}").unwrap();
        let row = Row {
            seq: 7,
            session: 2,
            prev: [0; 32],
            payload,
        };

        let reader = RecordKeyPair::from_private(private.as_bytes()).unwrap();
        let key = reader.session_key(&session_public, Some("node-a")).unwrap();
        assert_eq!(open_record(&key, &row).unwrap().as_bytes(), b"{\"op\":\"decrypt\"}");
        // The node is bound: another name, or none (the older derivation), opens nothing.
        for node in [Some("node-b"), Some("node-a "), None] {
            let k = reader.session_key(&session_public, node).unwrap();
            assert!(open_record(&k, &row).is_err(), "{node:?}");
        }
        assert!(
            open_record(&key, &Row { seq: 8, ..row.clone() }).is_err(),
            "bound to its position"
        );
        let (other, _) = RecordKeyPair::generate().unwrap();
        assert!(open_record(&other.session_key(&session_public, Some("node-a")).unwrap(), &row).is_err());
    }
}
