//! Finding a differencing disk's parent from its locator: `relative_path` (resolved from the
//! child's directory; leaving that directory is refused unless allowed), then
//! `absolute_win32_path`. The caller checks the linkage GUID.

use std::path::{Component, Path, PathBuf};

use super::error::{VResult, VhdxError};
use super::metadata::ParentLocator;

/// Splits a Windows or POSIX path into its parts.
fn parts(p: &str) -> Vec<&str> {
    p.split(['\\', '/']).filter(|s| !s.is_empty()).collect()
}

/// `relative_path` resolved from `base`; `Err` (its text) when it escapes `base`.
fn relative(base: &Path, rel: &str, allow_escape: bool) -> Result<PathBuf, String> {
    let mut depth: i64 = 0;
    let mut out = base.to_path_buf();
    for p in parts(rel) {
        match p {
            "." => {}
            ".." => {
                depth -= 1;
                if depth < 0 && !allow_escape {
                    return Err(rel.to_owned());
                }
                out.push("..");
            }
            _ if p.contains(':') => return Err(rel.to_owned()),
            _ => {
                depth += 1;
                out.push(p);
            }
        }
    }
    Ok(out)
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

pub fn resolve(
    file: &str,
    base: &Path,
    loc: &ParentLocator,
    loc_offset: u64,
    allow_escape: bool,
) -> VResult<PathBuf> {
    let mut tried: Vec<String> = Vec::new();
    if let Some(rel) = loc.get("relative_path") {
        match relative(base, rel, allow_escape) {
            Ok(p) if p.is_file() => return Ok(p),
            Ok(p) => tried.push(p.display().to_string()),
            Err(text) => {
                return Err(VhdxError::parent(
                    file,
                    "relative_path",
                    loc_offset,
                    format!(
                        "a path inside the child's directory {} (pass allow_parent_escape to follow it)",
                        base.display()
                    ),
                    text,
                ))
            }
        }
    }
    if let Some(abs) = loc.get("absolute_win32_path") {
        let ps = parts(abs);
        let drive = ps.first().is_some_and(|p| p.ends_with(':'));
        if !drive && !ps.is_empty() {
            let p: PathBuf = std::iter::once("/").chain(ps).collect();
            if p.is_file() {
                return Ok(p);
            }
            tried.push(p.display().to_string());
        } else {
            tried.push(abs.to_owned());
        }
    }
    Err(VhdxError::parent(
        file,
        "relative_path",
        loc_offset,
        "an existing parent file at relative_path or absolute_win32_path",
        if tried.is_empty() {
            "no path in the locator".to_owned()
        } else {
            format!("none of {}", tried.join(", "))
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        let base = Path::new("/a/b");
        assert_eq!(
            relative(base, ".\\p.vhdx", false).unwrap(),
            Path::new("/a/b/p.vhdx")
        );
        assert!(relative(base, "..\\..\\..\\etc\\passwd", false).is_err());
        assert!(relative(base, "x\\..\\..\\p", false).is_err());
        assert!(relative(base, "..\\p", true).is_ok());
        assert_eq!(
            relative_text(Path::new("/a/b"), Path::new("/a/b/p.vhdx")),
            ".\\p.vhdx"
        );
        assert_eq!(
            relative_text(Path::new("/a/b"), Path::new("/a/c/p.vhdx")),
            "..\\c\\p.vhdx"
        );
        assert_eq!(absolute_text(Path::new("/a/p.vhdx")), "\\a\\p.vhdx");
    }
}
