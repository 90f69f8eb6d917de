//! Recovery at open, without I/O: what the journal's bytes say the volume holds, given the
//! kernel's boot id now. `open.rs` reads the files and carries the result out.
//!
//! The rules (the module doc of `volume` says why each is safe):
//!
//! - an empty journal, or one whose first header was cut short, starts anew (no snapshot can
//!   have been recorded yet);
//! - a header of another format version or chunk size, or bytes that are not a journal, refuse
//!   the open (nothing is changed);
//! - the longest prefix of good records is replayed; a record that does not fit the state, or a
//!   torn or corrupt tail, marks every live snapshot invalid (the record lost may have described a
//!   copy whose live write followed), and the journal continues from the last good record;
//! - a last session that did not close is noted; if it ran in ordered (non-durable) mode on an
//!   earlier boot, an operating-system crash may have reordered its writes: every live snapshot
//!   is marked invalid;
//! - a used diff-area slot past the end of the diff file marks the snapshots that use it invalid
//!   ([`invalidate_missing_slots`]); one that is there is checked against its CRC-32C when a view
//!   reads it (`core.rs`), not here: an open reads no slot data.

use std::collections::BTreeMap;

use super::journal::{self, Record, Tail, FORMAT_VERSION};
use super::state::CowState;
use crate::volsnap::DEFAULT_CHUNK_SIZE;

/// How the journal goes on after recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Continue {
    /// Nothing was recorded: write a fresh header.
    Fresh,
    /// Append after the first `len` bytes (`records` good records); bytes past them are a bad
    /// tail, overwritten by the next append.
    Resume { len: u64, records: u64 },
}

/// What the journal says, after recovery.
#[derive(Debug)]
pub(crate) struct Recovered {
    /// The state the good records build, with `pending` applied.
    pub state: CowState,
    /// What recovery found and did, for the user.
    pub notes: Vec<String>,
    /// Records to append (already applied to `state`): the invalidations recovery decided.
    pub pending: Vec<Record>,
    pub journal: Continue,
}

/// The journal's first record: what every journal starts with.
pub(crate) fn header() -> Record {
    Record::Header {
        version: FORMAT_VERSION,
        chunk_size: DEFAULT_CHUNK_SIZE,
    }
}

/// Replays `bytes` (the whole journal) with `boot_now` the kernel's boot id. An error is why the
/// journal cannot be used at all (the caller refuses the open and changes nothing).
pub(crate) fn recover(bytes: &[u8], boot_now: &str) -> Result<Recovered, String> {
    let mut out = Recovered {
        state: CowState::new(DEFAULT_CHUNK_SIZE),
        notes: Vec::new(),
        pending: Vec::new(),
        journal: Continue::Fresh,
    };
    if header().frame(1).starts_with(bytes) {
        return Ok(out);
    }
    let scan = journal::scan(bytes);
    check_header(scan.records.first().map(|r| &r.2))?;
    let replay = replay(&mut out.state, &scan.records);
    out.journal = Continue::Resume {
        len: replay.good_len.unwrap_or(scan.good_len),
        records: replay.good_records.unwrap_or(scan.records.len() as u64),
    };
    let mut invalid_reason = replay.unfit;
    if invalid_reason.is_none() {
        if let Tail::Bad { offset, message } = &scan.tail {
            invalid_reason = Some(format!(
                "the journal ends in a torn or corrupt record at byte {offset} ({message}); \
                 the copy it described may be missing"
            ));
        }
    }
    if let Some(s) = &replay.unclean {
        out.notes.push(format!(
            "the previous session (pid {}) did not close the volume cleanly",
            s.pid
        ));
        if invalid_reason.is_none() && !s.durable && s.boot_id != boot_now {
            invalid_reason = Some(format!(
                "the session of pid {} ended without closing on an earlier boot ({}) in \
                 ordered (non-durable) mode: writes after its last sync may have reached the \
                 live files without their copies",
                s.pid, s.boot_id
            ));
        }
    }
    if let Some(reason) = invalid_reason {
        out.notes.push(reason.clone());
        out.state.rebuild_refs();
        let all: Vec<u64> = out.state.snaps.iter().map(|s| s.id).collect();
        for id in all {
            out.pending.push(Record::Invalidate {
                id,
                reason: reason.clone(),
            });
        }
    }
    for r in &out.pending {
        out.state
            .apply(r)
            .map_err(|m| format!("recovery failed: {m}"))?;
    }
    out.state.rebuild_refs();
    Ok(out)
}

fn check_header(first: Option<&Record>) -> Result<(), String> {
    match first {
        Some(Record::Header {
            version,
            chunk_size,
        }) if *version != FORMAT_VERSION || *chunk_size != DEFAULT_CHUNK_SIZE => Err(format!(
            "format version {version} with {chunk_size}-byte chunks; this build reads version \
             {FORMAT_VERSION} with {DEFAULT_CHUNK_SIZE}"
        )),
        Some(Record::Header { .. }) => Ok(()),
        _ => Err("does not start with a vssim volume journal header".to_owned()),
    }
}

/// The last session that opened the volume and did not close it.
#[derive(Debug)]
struct OpenSession {
    boot_id: String,
    durable: bool,
    pid: u32,
}

#[derive(Debug, Default)]
struct Replay {
    unclean: Option<OpenSession>,
    /// Why replay stopped early: a record did not fit the state (and where the journal is cut).
    unfit: Option<String>,
    good_len: Option<u64>,
    good_records: Option<u64>,
}

/// Applies the good records in order, stopping at the first that does not fit the state.
fn replay(state: &mut CowState, records: &[(u64, u64, Record)]) -> Replay {
    let mut out = Replay::default();
    for (seq, offset, rec) in records {
        match rec {
            Record::Session {
                boot_id,
                durable,
                pid,
            } => {
                out.unclean = Some(OpenSession {
                    boot_id: boot_id.clone(),
                    durable: *durable,
                    pid: *pid,
                })
            }
            Record::Close => out.unclean = None,
            _ => {}
        }
        if let Err(m) = state.apply(rec) {
            out.unfit = Some(format!(
                "journal record {seq} at byte {offset} does not fit the index ({m}); it and \
                 what followed were dropped"
            ));
            out.good_len = Some(*offset);
            out.good_records = Some(seq - 1);
            break;
        }
    }
    out
}

/// Marks invalid the snapshots that use a diff-area slot lying past the end of a diff file of
/// `diff_len` bytes (cut short: their data is gone). Returns the invalidation records (applied to
/// `state`) and notes. (Slots that are there are checked against their CRC-32C when read.)
pub(crate) fn invalidate_missing_slots(
    state: &mut CowState,
    diff_len: u64,
) -> Result<(Vec<Record>, Vec<String>), String> {
    let cs = state.chunk_size();
    let mut bad_snaps: BTreeMap<u64, u32> = BTreeMap::new();
    for (slot, users) in state.slot_users() {
        if (u64::from(slot) + 1) * cs > diff_len {
            for id in users {
                bad_snaps.entry(id).or_insert(slot);
            }
        }
    }
    let mut records = Vec::new();
    let mut notes = Vec::new();
    for (id, slot) in bad_snaps {
        let reason = format!(
            "diff-area slot {slot} is missing: the diff file is {diff_len} bytes, it was cut short"
        );
        notes.push(format!("snapshot {id}: {reason}"));
        records.push(Record::Invalidate { id, reason });
    }
    for r in &records {
        state
            .apply(r)
            .map_err(|m| format!("recovery failed: {m}"))?;
    }
    state.rebuild_refs();
    Ok((records, notes))
}

/// When nothing is live, all a journal still has to say is which ids were used: the records of
/// a compacted journal, and the state they build.
pub(crate) fn compacted(state: &CowState) -> Result<(CowState, Vec<Record>), String> {
    let floor = Record::IdFloor {
        next_id: state.next_id,
    };
    let mut fresh = CowState::new(DEFAULT_CHUNK_SIZE);
    fresh
        .apply(&floor)
        .map_err(|m| format!("compaction failed: {m}"))?;
    Ok((fresh, vec![header(), floor]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::journal::{encode, CopyEntry};

    const K: u64 = DEFAULT_CHUNK_SIZE;

    fn session(boot: &str, durable: bool) -> Record {
        Record::Session {
            boot_id: boot.into(),
            durable,
            pid: 7,
        }
    }

    fn create(id: u64) -> Record {
        Record::Create {
            id,
            created_unix: 5,
            files: vec![("f".into(), 4 * K)],
        }
    }

    fn copy(chunk: u64, slot: u32, serves: &[u64]) -> Record {
        Record::Copies {
            path: "f".into(),
            entries: vec![CopyEntry {
                chunk,
                slot,
                data_crc: Some(9),
                serves: serves.to_vec(),
            }],
        }
    }

    /// A session that took snapshots 1 and 2 and copied for both, not closed.
    fn open_session(boot: &str, durable: bool) -> Vec<Record> {
        vec![
            header(),
            session(boot, durable),
            create(1),
            copy(0, 0, &[1]),
            create(2),
            copy(1, 1, &[2, 1]),
        ]
    }

    fn closed(mut records: Vec<Record>) -> Vec<Record> {
        records.push(Record::Close);
        records
    }

    /// Byte offset where record `i` (0-based) starts.
    fn offset_of(records: &[Record], i: usize) -> usize {
        encode(&records[..i]).len()
    }

    /// What a case must give: the journal's continuation, the live and the invalid snapshots,
    /// and a fragment every note must be found among (empty: no note at all).
    struct Want {
        journal: Continue,
        live: &'static [u64],
        invalid: &'static [u64],
        notes: &'static [&'static str],
    }

    fn check(name: &str, bytes: &[u8], want: Want) {
        let r = recover(bytes, "boot-now").unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(r.journal, want.journal, "{name}");
        let live: Vec<u64> = r.state.snaps.iter().map(|s| s.id).collect();
        assert_eq!(live, want.live, "{name}: live");
        let invalid: Vec<u64> = r
            .pending
            .iter()
            .filter_map(|p| match p {
                Record::Invalidate { id, .. } => Some(*id),
                _ => None,
            })
            .collect();
        assert_eq!(invalid, want.invalid, "{name}: invalidated");
        assert_eq!(r.notes.len(), want.notes.len(), "{name}: {:?}", r.notes);
        for (note, fragment) in r.notes.iter().zip(want.notes) {
            assert!(
                note.contains(fragment),
                "{name}: {note:?} lacks {fragment:?}"
            );
        }
        // What recovery decided is in the state: the invalid snapshots are listed as such.
        for id in want.invalid {
            assert!(r.state.gone.contains_key(id), "{name}: {id} not gone");
        }
    }

    fn whole(records: &[Record]) -> Continue {
        Continue::Resume {
            len: encode(records).len() as u64,
            records: records.len() as u64,
        }
    }

    #[test]
    fn recovery_cases() {
        let header_bytes = header().frame(1);
        check(
            "empty journal",
            &[],
            Want {
                journal: Continue::Fresh,
                live: &[],
                invalid: &[],
                notes: &[],
            },
        );
        check(
            "first header cut short",
            &header_bytes[..header_bytes.len() - 1],
            Want {
                journal: Continue::Fresh,
                live: &[],
                invalid: &[],
                notes: &[],
            },
        );
        let clean = closed(open_session("boot-old", false));
        check(
            "clean close, on another boot",
            &encode(&clean),
            Want {
                journal: whole(&clean),
                live: &[1, 2],
                invalid: &[],
                notes: &[],
            },
        );
        let same_boot = open_session("boot-now", false);
        check(
            "killed, same boot (ordered mode): the kernel kept every write in order",
            &encode(&same_boot),
            Want {
                journal: whole(&same_boot),
                live: &[1, 2],
                invalid: &[],
                notes: &["did not close"],
            },
        );
        let other_boot = open_session("boot-old", false);
        check(
            "unclean on an earlier boot, ordered mode: an OS crash may have reordered writes",
            &encode(&other_boot),
            Want {
                journal: whole(&other_boot),
                live: &[],
                invalid: &[1, 2],
                notes: &["did not close", "earlier boot (boot-old)"],
            },
        );
        let durable = open_session("boot-old", true);
        check(
            "unclean on an earlier boot, durable mode: every copy was synced before its write",
            &encode(&durable),
            Want {
                journal: whole(&durable),
                live: &[1, 2],
                invalid: &[],
                notes: &["did not close"],
            },
        );
        let good = &open_session("boot-now", false)[..5];
        let mut torn = encode(&open_session("boot-now", false));
        torn.truncate(offset_of(&open_session("boot-now", false), 5) + 10);
        check(
            "mid-commit: the last copy record torn by a kill during its append",
            &torn,
            Want {
                journal: whole(good),
                live: &[],
                invalid: &[1, 2],
                notes: &["did not close", "torn or corrupt record at byte"],
            },
        );
        let mut flipped = encode(&clean);
        let at = offset_of(&clean, 5) + 20;
        flipped[at] ^= 0x40;
        check(
            "a bit flipped inside a record: the journal is cut there",
            &flipped,
            Want {
                journal: whole(good),
                live: &[],
                invalid: &[1, 2],
                notes: &["did not close", "CRC-32C mismatch"],
            },
        );
        let mut unfit = closed(open_session("boot-now", false));
        unfit.insert(6, copy(0, 5, &[1])); // chunk 0 was already copied for snapshot 1
        check(
            "a well-framed record that does not fit the state",
            &encode(&unfit),
            Want {
                journal: whole(&unfit[..6]),
                live: &[],
                invalid: &[1, 2],
                notes: &["did not close", "record 7 at byte"],
            },
        );
        let compacted = vec![header(), Record::IdFloor { next_id: 40 }, Record::Close];
        let r = recover(&encode(&compacted), "boot-now").unwrap();
        assert_eq!(r.state.next_id, 40, "a compacted journal keeps the next id");
    }

    #[test]
    fn journals_that_cannot_be_used_are_refused() {
        let other_version = Record::Header {
            version: FORMAT_VERSION + 1,
            chunk_size: K,
        };
        let other_chunk = Record::Header {
            version: FORMAT_VERSION,
            chunk_size: 2 * K,
        };
        for (name, bytes, fragment) in [
            (
                "unknown format version",
                encode(&[other_version]),
                "format version 2",
            ),
            (
                "another chunk size",
                encode(&[other_chunk]),
                "32768-byte chunks",
            ),
            (
                "not a journal",
                b"not a journal at all".to_vec(),
                "does not start with",
            ),
            (
                "a journal without its header",
                encode(&[session("b", false)]),
                "does not start with",
            ),
        ] {
            let err = recover(&bytes, "boot-now").unwrap_err();
            assert!(err.contains(fragment), "{name}: {err}");
        }
    }

    #[test]
    fn missing_slots_invalidate_only_their_snapshots() {
        // Slot 0 serves snapshot 1, slot 1 both, slot 2 snapshot 2 only.
        let mut records = open_session("b", false);
        records.push(copy(2, 2, &[2]));
        let mut rec = recover(&encode(&closed(records)), "b").unwrap();
        let (gone, _) = invalidate_missing_slots(&mut rec.state, 3 * K).unwrap();
        assert!(gone.is_empty(), "a whole diff file changes nothing");
        let (gone, notes) = invalidate_missing_slots(&mut rec.state, 2 * K + 100).unwrap();
        assert_eq!(gone.len(), 1);
        assert!(
            notes[0].starts_with("snapshot 2: diff-area slot 2 is missing"),
            "{notes:?}"
        );
        let live: Vec<u64> = rec.state.snaps.iter().map(|s| s.id).collect();
        assert_eq!(live, vec![1]);
    }

    #[test]
    fn compaction_keeps_only_the_next_id() {
        let mut rec = recover(&encode(&closed(open_session("b", false))), "b").unwrap();
        for id in [1, 2] {
            rec.state
                .apply(&Record::Delete {
                    id,
                    reason: journal::DeleteReason::User,
                })
                .unwrap();
        }
        let (state, records) = compacted(&rec.state).unwrap();
        assert_eq!(state.next_id, 3);
        assert!(state.gone.is_empty());
        assert_eq!(records, vec![header(), Record::IdFloor { next_id: 3 }]);
    }
}
