//! Paths on the volume: every name is resolved against the root, and nothing outside it (by `..`
//! or by a symlink that leads out) nor inside the diff area is accepted.

use std::path::{Component, Path, PathBuf};

use super::lock::ROOT_LOCK_NAME;
use super::VolumeError;

/// A file on the volume: its key (the path relative to the root, `/`-separated, symlinks inside the
/// root resolved) and its absolute path.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub key: String,
    pub abs: PathBuf,
}

fn outside(path: &Path, root: &Path, why: impl Into<String>) -> VolumeError {
    VolumeError::OutsideRoot {
        path: path.display().to_string(),
        root: root.to_owned(),
        why: why.into(),
    }
}

/// Resolves `path` (relative to `root`, or absolute under it). `root` and `diff_dir` are
/// canonical.
pub(crate) fn resolve(root: &Path, diff_dir: &Path, path: &Path) -> Result<Resolved, VolumeError> {
    let rel: PathBuf = if path.is_absolute() {
        path.strip_prefix(root)
            .map_err(|_| outside(path, root, "an absolute path must lie under the root"))?
            .to_owned()
    } else {
        path.to_owned()
    };
    let mut parts: Vec<String> = Vec::new();
    for comp in rel.components() {
        match comp {
            Component::Normal(p) => parts.push(
                p.to_str()
                    .ok_or_else(|| outside(path, root, "the name is not UTF-8"))?
                    .to_owned(),
            ),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(outside(path, root, "`..` components are not accepted"))
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(outside(path, root, "not a path under the root"))
            }
        }
    }
    if parts.is_empty() {
        return Err(outside(path, root, "names the root itself, not a file"));
    }
    // Resolve symlinks through the deepest part that exists; the rest is created later.
    let mut existing = root.to_owned();
    let mut depth = 0;
    for (i, p) in parts.iter().enumerate() {
        let next = existing.join(p);
        if std::fs::symlink_metadata(&next).is_err() {
            break;
        }
        existing = next;
        depth = i + 1;
    }
    let canonical_existing = if depth == 0 {
        root.to_owned()
    } else {
        std::fs::canonicalize(&existing).map_err(|e| {
            outside(
                path,
                root,
                format!("{} cannot be resolved: {e}", existing.display()),
            )
        })?
    };
    let mut abs = canonical_existing;
    for p in &parts[depth..] {
        abs.push(p);
    }
    let inner = abs
        .strip_prefix(root)
        .map_err(|_| outside(path, root, format!("a symlink leads to {}", abs.display())))?;
    if abs.starts_with(diff_dir) {
        return Err(outside(path, root, "it lies in the volume's diff area"));
    }
    let key = inner
        .components()
        .filter_map(|c| match c {
            Component::Normal(p) => p.to_str(),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("/");
    if key.is_empty() {
        return Err(outside(path, root, "names the root itself, not a file"));
    }
    if key == ROOT_LOCK_NAME {
        return Err(outside(path, root, "it is the volume's lock file"));
    }
    Ok(Resolved { key, abs })
}

/// Every regular file under `root` (symlinks, the diff area and the root's lock file skipped),
/// with its length, keys sorted.
pub(crate) fn walk(root: &Path, diff_dir: &Path) -> std::io::Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        if dir.starts_with(diff_dir) {
            continue;
        }
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            let p = entry.path();
            if meta.is_dir() {
                stack.push(p);
            } else if meta.is_file() {
                if let Ok(rel) = p.strip_prefix(root) {
                    match rel.to_str() {
                        // The volume's own lock file is not one of its files.
                        Some(ROOT_LOCK_NAME) | None => {}
                        Some(key) => {
                            out.push((key.replace(std::path::MAIN_SEPARATOR, "/"), meta.len()))
                        }
                    }
                }
            }
        }
    }
    out.sort();
    Ok(out)
}
