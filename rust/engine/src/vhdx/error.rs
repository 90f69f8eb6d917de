//! `VhdxError`: every way a VHDX file or a VHDX call can fail. Corruption errors name the file,
//! the structure, the field, the file offset and what was expected against what was found, so
//! the message alone is enough to find the bad bytes with a hex editor.

use std::fmt;

/// Where in a file a problem sits and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub structure: &'static str,
    pub field: &'static str,
    pub offset: u64,
    pub expected: String,
    pub found: String,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} field `{}` at offset {:#x}: expected {}, found {}",
            self.file, self.structure, self.field, self.offset, self.expected, self.found
        )
    }
}

/// Errors of the VHDX reader/writer.
#[derive(Debug, thiserror::Error)]
pub enum VhdxError {
    /// The file breaks the format: it was not used (and nothing was written to it).
    #[error("corrupt VHDX: {0}")]
    Corrupt(Box<Location>),
    /// The file is well formed but asks for something vssim does not implement (an unknown
    /// required region or metadata item, a log version other than 0).
    #[error("unsupported VHDX: {0}")]
    Unsupported(Box<Location>),
    /// A differencing disk's parent is missing, is the wrong file, or its locator is refused.
    #[error("VHDX parent: {0}")]
    Parent(Box<Location>),
    /// A caller passed a value outside its domain; nothing changed.
    #[error("invalid argument `{name}`: {message}")]
    InvalidArgument { name: &'static str, message: String },
    /// The call needs a writable open (or a still open disk).
    #[error("{file}: {message}")]
    State { file: String, message: String },
    /// Another handle holds the file (see `lock`): nothing was read from it or written to it.
    #[error(
        "{file}: locked: {holder}; cannot open it {wanted} (a VHDX has one writer, or any \
         number of readers and no writer)"
    )]
    Locked {
        file: String,
        wanted: &'static str,
        holder: String,
    },
    /// Operating-system I/O error.
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
}

impl VhdxError {
    pub fn corrupt(
        file: &str,
        structure: &'static str,
        field: &'static str,
        offset: u64,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> Self {
        VhdxError::Corrupt(Box::new(Location {
            file: file.to_owned(),
            structure,
            field,
            offset,
            expected: expected.into(),
            found: found.into(),
        }))
    }

    pub fn unsupported(
        file: &str,
        structure: &'static str,
        field: &'static str,
        offset: u64,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> Self {
        VhdxError::Unsupported(Box::new(Location {
            file: file.to_owned(),
            structure,
            field,
            offset,
            expected: expected.into(),
            found: found.into(),
        }))
    }

    pub fn parent(
        file: &str,
        field: &'static str,
        offset: u64,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> Self {
        VhdxError::Parent(Box::new(Location {
            file: file.to_owned(),
            structure: "parent locator",
            field,
            offset,
            expected: expected.into(),
            found: found.into(),
        }))
    }

    pub fn invalid(name: &'static str, message: impl Into<String>) -> Self {
        VhdxError::InvalidArgument {
            name,
            message: message.into(),
        }
    }

    pub fn state(file: &str, message: impl Into<String>) -> Self {
        VhdxError::State {
            file: file.to_owned(),
            message: message.into(),
        }
    }

    pub fn io(file: &str, source: std::io::Error) -> Self {
        VhdxError::Io {
            file: file.to_owned(),
            source,
        }
    }

    /// The location of a format error, if this is one.
    pub fn location(&self) -> Option<&Location> {
        match self {
            VhdxError::Corrupt(l) | VhdxError::Unsupported(l) | VhdxError::Parent(l) => Some(l),
            _ => None,
        }
    }
}

pub type VResult<T> = std::result::Result<T, VhdxError>;
