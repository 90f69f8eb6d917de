//! A differencing disk's parent: finding it from the locator, and the rules a chain must keep.
//!
//! One policy covers every locator entry, tried in the spec's order — `relative_path` (resolved
//! from the child's directory), `volume_path` (a Windows volume GUID path: never resolvable
//! here), `absolute_win32_path` (`\dir\file` read as `/dir/file`; a drive-letter path is not
//! resolvable here). Whichever entry leads to an existing file, that file — after following
//! symlinks — must lie inside the confinement directory (the child's directory unless the
//! caller names one, e.g. a backup store), or the open is refused unless the caller allowed the
//! escape. A refused entry is an error, never a reason to try the next one: a missing relative
//! path must not silently fall through to an absolute path somewhere else.
//!
//! A chain is at most [`MAX_CHAIN_DEPTH`] parents deep, and no file (by device and inode) and no
//! DataWriteGuid may appear twice in it: a disk that is its own parent, or two disks that are
//! each other's, is refused before the second open instead of recursing without end.

use std::path::{Component, Path, PathBuf};

use uuid::Uuid;

use super::error::{VResult, VhdxError};
use super::file::Vhdx;
use super::format::guid_braced;
use super::lock::FileId;
use super::metadata::ParentLocator;

/// The most parents one chain may have. Hyper-V allows 50 checkpoints per VM, each one level of
/// a chain (Microsoft, "Plan for Hyper-V scalability in Windows Server 2016 and 2019"); vssim's
/// incremental backup chains, which Hyper-V never opens, can be longer. 256 (a model choice)
/// admits both with room to spare and bounds what one open holds: 256 files, 256 BATs and the
/// reads' recursion through them.
pub const MAX_CHAIN_DEPTH: usize = 256;

/// Longest piece of locator text an error message quotes.
const QUOTE_CHARS: usize = 200;

/// Where a child's parents may be.
#[derive(Debug, Clone, Default)]
pub struct ParentPolicy {
    /// Follow a locator entry that leads outside the confinement directory.
    pub allow_escape: bool,
    /// The confinement directory (default: the child's own directory).
    pub root: Option<PathBuf>,
}

/// One file of a chain being opened.
#[derive(Debug, Clone)]
struct Link {
    name: String,
    id: Option<FileId>,
    data_write_guid: Uuid,
}

/// The files already open above the one being opened (its children, nearest last): what a new
/// parent must not repeat. Empty for a disk opened on its own.
#[derive(Debug, Clone, Default)]
pub struct Chain {
    links: Vec<Link>,
}

impl Chain {
    /// How many children the file being opened has in this chain.
    pub fn depth(&self) -> usize {
        self.links.len()
    }

    /// This chain with `v` appended (what `v`'s parent is opened with).
    pub(crate) fn with(&self, v: &Vhdx) -> Chain {
        let mut links = self.links.clone();
        links.push(Link {
            name: v.name.clone(),
            id: v.id,
            data_write_guid: v.header.data_write_guid,
        });
        Chain { links }
    }

    fn trail(&self, last: &str) -> String {
        let mut names: Vec<&str> = self.links.iter().map(|l| l.name.as_str()).collect();
        names.push(last);
        names.join(" → ")
    }

    fn refusal(&self, last: &str, expected: String, found: String) -> VhdxError {
        let child = self.links.last().map_or(last, |l| l.name.as_str());
        VhdxError::parent(child, "parent chain", 0, expected, found)
    }

    /// Refuses a parent that would make the chain deeper than [`MAX_CHAIN_DEPTH`].
    pub(crate) fn check_depth(&self, parent: &Path) -> VResult<()> {
        if self.depth() >= MAX_CHAIN_DEPTH {
            return Err(self.refusal(
                &parent.display().to_string(),
                format!("a chain of at most {MAX_CHAIN_DEPTH} parents (MAX_CHAIN_DEPTH)"),
                format!("a parent {} more levels down", parent.display()),
            ));
        }
        Ok(())
    }

    /// Refuses `name` (file `id`) when that file is already in the chain.
    pub(crate) fn check_file(&self, name: &str, id: Option<FileId>) -> VResult<()> {
        if id.is_some() && self.links.iter().any(|l| l.id == id) {
            return Err(self.refusal(
                name,
                "a parent that is not already in the chain".into(),
                format!("{} (a cycle: a file is its own ancestor)", self.trail(name)),
            ));
        }
        Ok(())
    }

    /// Refuses a parent whose DataWriteGuid a file of the chain already has (a copy of a disk in
    /// its own chain, or a crafted cycle).
    pub(crate) fn check_guid(&self, name: &str, dwg: &Uuid) -> VResult<()> {
        if let Some(l) = self.links.iter().find(|l| l.data_write_guid == *dwg) {
            return Err(self.refusal(
                name,
                "parents whose DataWriteGuid no file of the chain has".into(),
                format!(
                    "{} (a cycle: {} has the DataWriteGuid {} of {})",
                    self.trail(name),
                    name,
                    guid_braced(dwg),
                    l.name
                ),
            ));
        }
        Ok(())
    }
}

/// Locator text as an error message quotes it: at most [`QUOTE_CHARS`] characters, with control
/// and bidirectional-formatting characters escaped (they could rewrite a terminal's display).
pub fn quote(text: &str) -> String {
    let risky = |c: char| {
        c.is_control()
            || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
    };
    let mut s = String::new();
    for c in text.chars().take(QUOTE_CHARS) {
        if risky(c) {
            s.extend(c.escape_unicode());
        } else {
            s.push(c);
        }
    }
    if text.chars().count() > QUOTE_CHARS {
        s.push('…');
    }
    s
}

/// Splits a Windows or POSIX path into its parts.
fn parts(p: &str) -> Vec<&str> {
    p.split(['\\', '/']).filter(|s| !s.is_empty()).collect()
}

enum Relative {
    Inside(PathBuf),
    /// Climbs above the child's directory (`..`), or names a drive.
    Escapes(PathBuf),
    DriveOrVolume,
}

/// `relative_path` joined to `base`, and whether it climbs out of `base` on the way.
fn relative(base: &Path, rel: &str) -> Relative {
    let mut depth: i64 = 0;
    let mut out = base.to_path_buf();
    let mut escaped = false;
    for p in parts(rel) {
        match p {
            "." => {}
            ".." => {
                depth -= 1;
                escaped |= depth < 0;
                out.push("..");
            }
            _ if p.contains(':') => return Relative::DriveOrVolume,
            _ => {
                depth += 1;
                out.push(p);
            }
        }
    }
    if escaped {
        Relative::Escapes(out)
    } else {
        Relative::Inside(out)
    }
}

/// `absolute_win32_path` as a local path: `\a\b` is `/a/b`; a drive-letter or UNC path is not
/// resolvable on this system.
fn absolute(text: &str) -> Option<PathBuf> {
    if text.starts_with("\\\\") {
        return None;
    }
    let ps = parts(text);
    if ps.is_empty() || ps.first().is_some_and(|p| p.contains(':')) {
        return None;
    }
    Some(std::iter::once("/").chain(ps).collect())
}

/// The child's-directory-relative path that `create` stores for `parent` seen from `child_dir`.
pub fn relative_text(child_dir: &Path, parent: &Path) -> String {
    let norm = |p: &Path| -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for c in p.components() {
            match c {
                Component::ParentDir => {
                    v.pop();
                }
                Component::Normal(s) => v.push(s.to_string_lossy().into_owned()),
                _ => {}
            }
        }
        v
    };
    let a = norm(child_dir);
    let b = norm(parent);
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out: Vec<String> = Vec::new();
    if common == a.len() {
        out.push(".".into());
    }
    for _ in common..a.len() {
        out.push("..".into());
    }
    out.extend(b[common..].iter().cloned());
    out.join("\\")
}

/// The `absolute_win32_path` text for a local path: its parts joined with backslashes.
pub fn absolute_text(p: &Path) -> String {
    let s = p.to_string_lossy().replace('/', "\\");
    if s.starts_with('\\') {
        s
    } else {
        format!("\\{s}")
    }
}

fn escape_error(
    file: &str,
    key: &'static str,
    loc_offset: u64,
    root: &Path,
    text: &str,
    leads_to: Option<&Path>,
) -> VhdxError {
    VhdxError::parent(
        file,
        key,
        loc_offset,
        format!(
            "a parent inside {} (pass allow_parent_escape, or --allow-parent-escape, to follow \
             it)",
            root.display()
        ),
        match leads_to {
            Some(p) => format!("{} leading to {}", quote(text), p.display()),
            None => quote(text),
        },
    )
}

/// The parent file of the child `file` (in `child_dir`) whose locator is `loc`, under `policy`.
pub fn resolve(
    file: &str,
    child_dir: &Path,
    loc: &ParentLocator,
    loc_offset: u64,
    policy: &ParentPolicy,
) -> VResult<PathBuf> {
    let child_dir = if child_dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        child_dir
    };
    let root_text = policy.root.as_deref().unwrap_or(child_dir);
    let root = std::fs::canonicalize(root_text).unwrap_or_else(|_| root_text.to_path_buf());
    let mut tried: Vec<String> = Vec::new();
    for key in ["relative_path", "volume_path", "absolute_win32_path"] {
        let Some(text) = loc.get(key) else {
            continue;
        };
        let candidate = match key {
            "relative_path" => match relative(child_dir, text) {
                Relative::Inside(p) => p,
                Relative::Escapes(p) if policy.allow_escape => p,
                Relative::Escapes(_) | Relative::DriveOrVolume if !policy.allow_escape => {
                    return Err(escape_error(file, key, loc_offset, &root, text, None));
                }
                _ => {
                    tried.push(format!("{key} {} (not a relative path)", quote(text)));
                    continue;
                }
            },
            "volume_path" => {
                tried.push(format!(
                    "{key} {} (a Windows volume path: not resolvable here)",
                    quote(text)
                ));
                continue;
            }
            _ => match absolute(text) {
                Some(p) => p,
                None => {
                    tried.push(format!(
                        "{key} {} (a drive-letter or UNC path: not resolvable here)",
                        quote(text)
                    ));
                    continue;
                }
            },
        };
        if !candidate.is_file() {
            tried.push(format!("{key} → {} (no such file)", candidate.display()));
            continue;
        }
        if !policy.allow_escape {
            let real = std::fs::canonicalize(&candidate)
                .map_err(|e| VhdxError::io(&candidate.display().to_string(), e))?;
            if !real.starts_with(&root) {
                return Err(escape_error(
                    file,
                    key,
                    loc_offset,
                    &root,
                    text,
                    Some(&real),
                ));
            }
        }
        return Ok(candidate);
    }
    Err(VhdxError::parent(
        file,
        "relative_path",
        loc_offset,
        "an existing parent file at relative_path, volume_path or absolute_win32_path",
        if tried.is_empty() {
            "no path in the locator".to_owned()
        } else {
            format!("none of: {}", tried.join("; "))
        },
    ))
}

/// Whether `text` (a locator's `parent_linkage` or `parent_linkage2`, braces optional, any case)
/// names `guid`.
fn names(text: Option<&str>, guid: &Uuid) -> bool {
    text.and_then(|s| Uuid::parse_str(s.trim().trim_matches(['{', '}'])).ok())
        .is_some_and(|g| g == *guid)
}

/// The parent rules of one link of a chain: the parent's DataWriteGuid is one of the locator's
/// linkages, and it has the child's virtual size and logical sector size.
pub fn check_link(
    child: &str,
    virtual_size: u64,
    logical_sector_size: u32,
    loc: &ParentLocator,
    loc_offset: u64,
    parent: &Vhdx,
) -> VResult<()> {
    let dwg = parent.data_write_guid();
    if !names(loc.get("parent_linkage"), &dwg) && !names(loc.get("parent_linkage2"), &dwg) {
        return Err(VhdxError::parent(
            child,
            "parent_linkage",
            loc_offset,
            format!(
                "the parent's DataWriteGuid {} ({})",
                guid_braced(&dwg),
                parent.name()
            ),
            quote(loc.get("parent_linkage").unwrap_or("")),
        ));
    }
    if parent.virtual_size() != virtual_size || parent.logical_sector_size() != logical_sector_size
    {
        return Err(VhdxError::parent(
            child,
            "virtual size / logical sector size",
            loc_offset,
            format!("{virtual_size} bytes, {logical_sector_size}-byte sectors (this disk)"),
            format!(
                "{} bytes, {}-byte sectors in {}",
                parent.virtual_size(),
                parent.logical_sector_size(),
                parent.name()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(entries: &[(&str, &str)]) -> ParentLocator {
        ParentLocator {
            entries: entries
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn relative_paths() {
        let base = Path::new("/a/b");
        assert!(
            matches!(relative(base, ".\\p.vhdx"), Relative::Inside(p) if p == Path::new("/a/b/p.vhdx"))
        );
        assert!(matches!(
            relative(base, "..\\..\\..\\etc\\passwd"),
            Relative::Escapes(_)
        ));
        assert!(matches!(
            relative(base, "x\\..\\..\\p"),
            Relative::Escapes(_)
        ));
        assert!(matches!(relative(base, "C:\\p"), Relative::DriveOrVolume));
        assert_eq!(
            relative_text(Path::new("/a/b"), Path::new("/a/b/p.vhdx")),
            ".\\p.vhdx"
        );
        assert_eq!(
            relative_text(Path::new("/a/b"), Path::new("/a/c/p.vhdx")),
            "..\\c\\p.vhdx"
        );
        assert_eq!(absolute_text(Path::new("/a/p.vhdx")), "\\a\\p.vhdx");
        assert_eq!(absolute("\\a\\p.vhdx"), Some(PathBuf::from("/a/p.vhdx")));
        assert_eq!(absolute("C:\\a\\p.vhdx"), None);
        assert_eq!(absolute("\\\\server\\share\\p.vhdx"), None);
    }

    #[test]
    fn every_entry_is_confined_and_symlinks_are_followed() {
        let top = std::env::temp_dir().join(format!("vssim-parent-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&top);
        let (inside, outside) = (top.join("in"), top.join("out"));
        std::fs::create_dir_all(&inside).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        let far = outside.join("p.vhdx");
        std::fs::write(&far, b"x").unwrap();
        std::fs::write(inside.join("near.vhdx"), b"x").unwrap();
        std::os::unix::fs::symlink(&far, inside.join("link.vhdx")).unwrap();
        let strict = ParentPolicy::default();
        let abs = absolute_text(&far);
        let cases: [(&[(&str, &str)], &str); 3] = [
            (
                &[("absolute_win32_path", abs.as_str())],
                "absolute_win32_path",
            ),
            (
                &[
                    ("relative_path", ".\\gone.vhdx"),
                    ("absolute_win32_path", abs.as_str()),
                ],
                "absolute_win32_path",
            ),
            (&[("relative_path", ".\\link.vhdx")], "relative_path"),
        ];
        for (entries, field) in cases {
            let e = resolve("c", &inside, &loc(entries), 0, &strict).unwrap_err();
            assert_eq!(e.location().unwrap().field, field, "{e}");
            assert!(e.to_string().contains("allow_parent_escape"), "{e}");
            let open = ParentPolicy {
                allow_escape: true,
                root: None,
            };
            assert!(resolve("c", &inside, &loc(entries), 0, &open).is_ok());
        }
        // An absolute path inside the directory, and a wider confinement.
        let near = absolute_text(&inside.join("near.vhdx"));
        assert!(resolve(
            "c",
            &inside,
            &loc(&[("absolute_win32_path", &near)]),
            0,
            &strict
        )
        .is_ok());
        let wide = ParentPolicy {
            allow_escape: false,
            root: Some(top.clone()),
        };
        assert!(resolve(
            "c",
            &inside,
            &loc(&[("absolute_win32_path", &abs)]),
            0,
            &wide
        )
        .is_ok());
        let e = resolve(
            "c",
            &inside,
            &loc(&[("volume_path", "\\\\?\\Volume{x}\\p")]),
            0,
            &strict,
        )
        .unwrap_err();
        assert!(e.to_string().contains("volume path"), "{e}");
        std::fs::remove_dir_all(&top).unwrap();
    }

    #[test]
    fn quotes_are_escaped_and_short() {
        assert_eq!(quote("a\u{1b}[31m\\b"), "a\\u{1b}[31m\\b");
        assert_eq!(quote("\u{202E}x"), "\\u{202e}x");
        assert!(quote(&"x".repeat(1000)).ends_with("x…"));
    }
}
