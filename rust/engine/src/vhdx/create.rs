//! Creating fixed, dynamic and differencing disks, laid out as QEMU does: log at 1 MiB (1 MiB
//! long), BAT after it, then the metadata region (1 MiB), then data.

use std::path::Path;

use uuid::Uuid;

use super::bat::{self, Geometry};
use super::error::{VResult, VhdxError};
use super::file::{OpenOptions, Vhdx};
use super::format::*;
use super::header::Header;
use super::lock::{FileId, FileLock, LockMode};
use super::metadata::{Metadata, ParentLocator};
use super::parent;
use super::paths::Output;
use super::region::{RegionEntry, RegionTable};
use super::DiskType;
use crate::storage::{FileStorage, Storage};

/// What to create.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    pub virtual_size: u64,
    pub disk_type: DiskType,
    /// Default: 32 MiB (a differencing disk: its parent's block size).
    pub block_size: Option<u64>,
    /// Default 512 (a differencing disk: its parent's).
    pub logical_sector_size: Option<u32>,
    /// Default 4096 (a differencing disk: its parent's).
    pub physical_sector_size: Option<u32>,
}

impl CreateOptions {
    pub fn dynamic(virtual_size: u64) -> Self {
        CreateOptions {
            virtual_size,
            disk_type: DiskType::Dynamic,
            block_size: None,
            logical_sector_size: None,
            physical_sector_size: None,
        }
    }
}

pub const LOG_OFFSET: u64 = MIB;
pub const LOG_LENGTH: u64 = MIB;
pub const BAT_OFFSET: u64 = 2 * MIB;
pub const METADATA_LENGTH: u64 = MIB;

fn file_identifier() -> Vec<u8> {
    let mut b = vec![0u8; 64 * 1024];
    b[0..8].copy_from_slice(FILE_ID_SIG);
    let creator = format!("vssim {}", env!("CARGO_PKG_VERSION"));
    for (i, u) in creator.encode_utf16().take(255).enumerate() {
        put_u16(&mut b, 8 + 2 * i, u);
    }
    b
}

/// Creates a new file at `path` (it must not exist). A differencing disk needs `parent_path`.
pub fn create(path: &Path, opts: &CreateOptions, parent_path: Option<&Path>) -> VResult<Vhdx> {
    create_output(path, opts, parent_path, false)
}

/// Creates a new disk at `path` under the output rule (`paths.rs`): written under a staged name
/// and renamed into place once its structures are durable; an existing file is replaced only
/// with `overwrite`, and never when it is the parent (or any file of the parent's chain). The
/// disk is returned open for writing, locked exclusively.
pub fn create_output(
    path: &Path,
    opts: &CreateOptions,
    parent_path: Option<&Path>,
    overwrite: bool,
) -> VResult<Vhdx> {
    let name = path.display().to_string();
    let parent = match (opts.disk_type, parent_path) {
        (DiskType::Differencing, Some(pp)) => Some(Box::new(Vhdx::open(pp, false)?)),
        (DiskType::Differencing, None) => {
            return Err(VhdxError::invalid(
                "parent",
                "a differencing disk needs a parent",
            ))
        }
        (_, Some(_)) => {
            return Err(VhdxError::invalid(
                "parent",
                "only a differencing disk has a parent",
            ))
        }
        _ => None,
    };
    let locator = match (&parent, parent_path) {
        (Some(p), Some(pp)) => {
            let abs_parent = std::path::absolute(pp).map_err(|e| VhdxError::io(&name, e))?;
            let abs_child = std::path::absolute(path).map_err(|e| VhdxError::io(&name, e))?;
            let child_dir = abs_child.parent().unwrap_or(Path::new("/"));
            Some(ParentLocator {
                entries: vec![
                    (
                        "parent_linkage".into(),
                        // Lower case: libvhdi parses nothing else (readers compare ignoring case).
                        format!("{{{}}}", p.data_write_guid().hyphenated()),
                    ),
                    (
                        "relative_path".into(),
                        parent::relative_text(child_dir, &abs_parent),
                    ),
                    (
                        "absolute_win32_path".into(),
                        parent::absolute_text(&abs_parent),
                    ),
                ],
            })
        }
        _ => None,
    };
    check_options(opts, parent.as_deref())?;
    let inputs = parent.as_deref().map(Vhdx::inputs).unwrap_or_default();
    let out = Output::begin(path, overwrite, inputs)?;
    let mut v = create_in_place(out.staged(), opts, parent, locator)?;
    out.commit()?;
    v.name = name;
    v.path = Some(path.to_path_buf());
    if v.meta.has_parent {
        v.parent_path = parent_path.map(Path::to_path_buf);
    }
    Ok(v)
}

/// Creates a new disk right at `path` (which must not exist), locked exclusively: the body of
/// [`create_output`], and what a staged output (copy, import) writes into.
pub(crate) fn create_in_place(
    path: &Path,
    opts: &CreateOptions,
    parent: Option<Box<Vhdx>>,
    locator: Option<ParentLocator>,
) -> VResult<Vhdx> {
    let name = path.display().to_string();
    let st = FileStorage::create_new(path).map_err(|e| VhdxError::io(&name, e))?;
    let lock = FileLock::acquire(st.file(), path, LockMode::Exclusive)?;
    let id = FileId::of_file(st.file()).map_err(|e| VhdxError::io(&name, e))?;
    match create_on(Box::new(st), opts, parent, locator) {
        Ok(mut v) => {
            v.path = Some(path.to_path_buf());
            v.id = Some(id);
            v.lock = Some(lock);
            Ok(v)
        }
        Err(e) => {
            let _ = std::fs::remove_file(path);
            Err(e)
        }
    }
}

fn check_options(opts: &CreateOptions, parent: Option<&Vhdx>) -> VResult<()> {
    let lss = opts
        .logical_sector_size
        .or(parent.map(Vhdx::logical_sector_size))
        .unwrap_or(512);
    let pss = opts
        .physical_sector_size
        .or(parent.map(Vhdx::physical_sector_size))
        .unwrap_or(4096);
    for (n, v) in [("logical_sector_size", lss), ("physical_sector_size", pss)] {
        if v != 512 && v != 4096 {
            return Err(VhdxError::invalid(n, format!("{v} is not 512 or 4096")));
        }
    }
    let bs = opts
        .block_size
        .or(parent.map(Vhdx::block_size))
        .unwrap_or(DEFAULT_BLOCK_SIZE);
    if !bs.is_power_of_two() || !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&bs) {
        return Err(VhdxError::invalid(
            "block_size",
            format!("{bs} is not a power of two from 1 MiB to 256 MiB"),
        ));
    }
    if let Some(p) = parent {
        if opts.virtual_size != 0 && opts.virtual_size != p.virtual_size() {
            return Err(VhdxError::invalid(
                "virtual_size",
                format!(
                    "{} differs from the parent's {}",
                    opts.virtual_size,
                    p.virtual_size()
                ),
            ));
        }
        if lss != p.logical_sector_size() {
            return Err(VhdxError::invalid(
                "logical_sector_size",
                format!(
                    "{lss} differs from the parent's {}",
                    p.logical_sector_size()
                ),
            ));
        }
    } else {
        let vs = opts.virtual_size;
        if vs == 0 || vs > MAX_VIRTUAL_SIZE || !vs.is_multiple_of(u64::from(lss)) {
            return Err(VhdxError::invalid(
                "virtual_size",
                format!(
                    "{vs} is not a non-zero multiple of {lss} up to 64 TiB ({MAX_VIRTUAL_SIZE})"
                ),
            ));
        }
    }
    Ok(())
}

/// Writes a new disk onto empty storage and returns it open for writing.
pub fn create_on(
    mut st: Box<dyn Storage>,
    opts: &CreateOptions,
    parent: Option<Box<Vhdx>>,
    locator: Option<ParentLocator>,
) -> VResult<Vhdx> {
    check_options(opts, parent.as_deref())?;
    let name = st.name();
    let p = parent.as_deref();
    let virtual_size = p.map_or(opts.virtual_size, Vhdx::virtual_size);
    let lss = opts
        .logical_sector_size
        .or(p.map(Vhdx::logical_sector_size))
        .unwrap_or(512);
    let pss = opts
        .physical_sector_size
        .or(p.map(Vhdx::physical_sector_size))
        .unwrap_or(4096);
    let bs = opts
        .block_size
        .or(p.map(Vhdx::block_size))
        .unwrap_or(DEFAULT_BLOCK_SIZE);
    let has_parent = opts.disk_type == DiskType::Differencing;
    let fixed = opts.disk_type == DiskType::Fixed;
    let geo = Geometry::new(virtual_size, bs, u64::from(lss), has_parent);
    let bat_len = geo.region_len();
    let meta_offset = BAT_OFFSET + bat_len;
    let data_offset = meta_offset + METADATA_LENGTH;
    let meta = Metadata {
        block_size: bs as u32,
        leave_block_allocated: fixed,
        has_parent,
        virtual_size,
        disk_id: p.map_or_else(Uuid::new_v4, Vhdx::virtual_disk_id),
        logical_sector_size: lss,
        physical_sector_size: pss,
        parent_locator: locator,
        locator_offset: 0,
    };
    let regions = RegionTable {
        entries: vec![
            RegionEntry {
                guid: BAT_GUID,
                file_offset: BAT_OFFSET,
                length: bat_len as u32,
                required: true,
            },
            RegionEntry {
                guid: METADATA_GUID,
                file_offset: meta_offset,
                length: METADATA_LENGTH as u32,
                required: true,
            },
        ],
    };
    let mut batv: Vec<u64> = Vec::new();
    batv.try_reserve_exact((bat_len / 8) as usize)
        .map_err(|_| {
            VhdxError::io(
                &name,
                std::io::Error::new(
                    std::io::ErrorKind::OutOfMemory,
                    format!("cannot allocate the {bat_len}-byte BAT"),
                ),
            )
        })?;
    batv.resize((bat_len / 8) as usize, 0);
    let mut end = data_offset;
    if fixed {
        for b in 0..geo.payload_blocks {
            batv[geo.pb_index(b) as usize] = bat::entry(bat::PB_FULLY_PRESENT, end);
            end += bs;
        }
    }
    let io = |e| VhdxError::io(&name, e);
    st.set_len(end).map_err(io)?;
    st.write_at(&file_identifier(), 0).map_err(io)?;
    let rt = regions.to_bytes();
    st.write_at(&rt, REGION_TABLE_OFFSETS[0]).map_err(io)?;
    st.write_at(&rt, REGION_TABLE_OFFSETS[1]).map_err(io)?;
    st.write_at(&meta.to_region(METADATA_LENGTH as usize), meta_offset)
        .map_err(io)?;
    if fixed {
        // In 1 MiB pieces: no second copy of a BAT that may be hundreds of MiB.
        for (i, piece) in batv.chunks((MIB / 8) as usize).enumerate() {
            let bytes: Vec<u8> = piece.iter().flat_map(|e| e.to_le_bytes()).collect();
            st.write_at(&bytes, BAT_OFFSET + i as u64 * MIB)
                .map_err(io)?;
        }
    }
    st.flush().map_err(io)?;
    // The headers come last: until they exist the file is not a VHDX.
    let mut h = Header {
        sequence: 0,
        file_write_guid: Uuid::new_v4(),
        data_write_guid: Uuid::new_v4(),
        log_guid: Uuid::nil(),
        log_version: 0,
        version: 1,
        log_length: LOG_LENGTH as u32,
        log_offset: LOG_OFFSET,
    };
    for (i, off) in HEADER_OFFSETS.iter().enumerate() {
        h.sequence = i as u64;
        st.write_at(&h.to_bytes(), *off).map_err(io)?;
    }
    st.flush().map_err(io)?;
    Vhdx::from_parts(st, h, regions, meta, BAT_OFFSET, batv, parent)
}

/// Opens `path` read-only, with default options (convenience for the backup helpers).
pub fn open_ro(path: &Path) -> VResult<Vhdx> {
    Vhdx::open_with(path, OpenOptions::default())
}
