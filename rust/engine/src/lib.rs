//! vssim-engine: the hot path of vssim, in plain Rust (no Python).
//!
//! - [`volsnap`]: the system provider's figures (copy unit, snapshot limit), shared by `cow` and
//!   `volume`.
//! - [`storage`]: positional byte storage (a file, memory, a volume file, a snapshot view).
//! - [`vhdx`]: MS-VHDX files: create, read, write, differencing chains, the log, check.
//! - [`volume`]: real copy-on-write snapshots of a folder, with a persistent diff area.
//! - [`error`]: the engine-wide [`Error`]: the trackers' own cases, and `vhdx`'s and `volume`'s
//!   errors wrapped.
//! - [`chunkset`]: the sparse radix bitmap the trackers are built on (batches dealt to shards).
//! - [`limit`]: the memory system's limit for a tracker's batch (the benchmarks' reference).
//! - [`cow`]: copy-on-write snapshot tracking of one volume, as the system provider (volsnap) does it.
//! - [`cbt`]: changed-block tracking of one virtual disk, what an incremental backup reads.
//! - [`links`]: the max-min fair rates of transfers and background flows on shared links, and the
//!   simulated links' state (transfers, bytes, busy time, background flows).
//! - [`workload`]: per-VM I/O streams, the VHDX layout model, and the modelled cluster (which can
//!   put its disks on real VHDX files on real volumes).
//! - [`estimate`]: the estimate tier: in closed form, what `workload`'s modelled cluster would
//!   count in expectation, for the same generator and layout.
//!
//! # Module order
//!
//! Each module uses only the modules its line names (arrows point to what is used); there is no
//! cycle, so each can be read and tested with only what lies below it (test code may use more:
//! `volume`'s tests check it against `cow`). `tests::module_order` holds the code to this table.
//!
//! ```text
//! volsnap, storage                      (leaves)
//! vhdx     → storage                    (its own VhdxError)
//! volume   → storage, volsnap           (its own VolumeError)
//! error    → vhdx, volume               (wraps their errors)
//! chunkset → error
//! limit    → error
//! cow      → chunkset, error, volsnap
//! cbt      → chunkset, error
//! links    → error
//! workload → cow, cbt, vhdx, volume, storage, error
//! estimate → workload, cow, cbt, vhdx, volsnap, error
//! ```
//!
//! Every fallible call returns a typed error; nothing here panics on bad input.

pub mod cbt;
pub mod chunkset;
pub mod cow;
pub mod error;
pub mod estimate;
pub mod limit;
pub mod links;
pub mod storage;
pub mod vhdx;
pub mod volsnap;
pub mod volume;
pub mod workload;

pub use error::{Error, Result};

#[cfg(test)]
mod tests {
    /// The table of the crate doc: each module and the modules its (non-test) code may use.
    const ORDER: &[(&str, &[&str])] = &[
        ("volsnap", &[]),
        ("storage", &[]),
        ("vhdx", &["storage"]),
        ("volume", &["storage", "volsnap"]),
        ("error", &["vhdx", "volume"]),
        ("chunkset", &["error"]),
        ("limit", &["error"]),
        ("cow", &["chunkset", "error", "volsnap"]),
        ("cbt", &["chunkset", "error"]),
        ("links", &["error"]),
        (
            "workload",
            &["cow", "cbt", "vhdx", "volume", "storage", "error"],
        ),
        (
            "estimate",
            &["workload", "cow", "cbt", "vhdx", "volsnap", "error"],
        ),
    ];

    /// The code of `path` without comments and without its `#[cfg(test)]` module (test code may
    /// reach further).
    fn non_test_source(path: &std::path::Path) -> String {
        let text = std::fs::read_to_string(path).unwrap();
        let code = match text.find("#[cfg(test)]\nmod tests") {
            Some(at) => &text[..at],
            None => &text,
        };
        code.lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                files(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }

    #[test]
    fn module_order() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut all = Vec::new();
        files(&src, &mut all);
        let mut seen = 0;
        for path in all {
            let rel = path.strip_prefix(&src).unwrap();
            let first = rel
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_str()
                .unwrap();
            let module = first.trim_end_matches(".rs");
            let name = rel.file_name().unwrap().to_str().unwrap();
            if module == "lib" || name == "tests.rs" || name == "layout_proof.rs" {
                continue;
            }
            let (_, allowed) = ORDER
                .iter()
                .find(|(m, _)| *m == module)
                .unwrap_or_else(|| panic!("{module} is not in the crate doc's module order"));
            let text = non_test_source(&path);
            for (at, _) in text.match_indices("crate::") {
                let used: String = text[at + 7..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                let top = ORDER.iter().any(|(m, _)| *m == used);
                assert!(
                    !top || used == module || allowed.contains(&used.as_str()),
                    "{}: `{module}` uses `crate::{used}`, which the module order does not allow",
                    rel.display()
                );
                seen += 1;
            }
        }
        assert!(
            seen > 20,
            "the scan found only {seen} uses: is it reading the sources?"
        );
    }
}
