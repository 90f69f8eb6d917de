//! The two 4 KiB headers at 64 KiB and 128 KiB. The current header is the valid one with the
//! higher sequence number; two valid headers with equal numbers are accepted only when identical
//! (QEMU's rule; Disk2VHD writes such files).

use uuid::Uuid;

use super::error::{VResult, VhdxError};
use super::format::*;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub sequence: u64,
    pub file_write_guid: Uuid,
    pub data_write_guid: Uuid,
    pub log_guid: Uuid,
    pub log_version: u16,
    pub version: u16,
    pub log_length: u32,
    pub log_offset: u64,
}

impl Header {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_SIZE];
        b[0..4].copy_from_slice(b"head");
        put_u64(&mut b, 8, self.sequence);
        put_guid(&mut b, 16, &self.file_write_guid);
        put_guid(&mut b, 32, &self.data_write_guid);
        put_guid(&mut b, 48, &self.log_guid);
        put_u16(&mut b, 64, self.log_version);
        put_u16(&mut b, 66, self.version);
        put_u32(&mut b, 68, self.log_length);
        put_u64(&mut b, 72, self.log_offset);
        seal(&mut b, 4);
        b
    }

    /// Parses one header slot; `Err` says why it is not valid.
    pub fn parse(file: &str, b: &[u8], offset: u64) -> VResult<Header> {
        if b.len() < HEADER_SIZE {
            return Err(VhdxError::corrupt(
                file,
                "header",
                "signature",
                offset,
                "a 4096-byte header",
                format!("{} bytes (file truncated)", b.len()),
            ));
        }
        if &b[0..4] != b"head" {
            return Err(VhdxError::corrupt(
                file,
                "header",
                "signature",
                offset,
                "\"head\"",
                sig(b, 0, 4),
            ));
        }
        let stored = u32_at(b, 4);
        let computed = crc_with_zeroed(&b[..HEADER_SIZE], 4);
        if stored != computed {
            return Err(VhdxError::corrupt(
                file,
                "header",
                "checksum",
                offset + 4,
                format!("{computed:#010x}"),
                format!("{stored:#010x}"),
            ));
        }
        Ok(Header {
            sequence: u64_at(b, 8),
            file_write_guid: guid_at(b, 16),
            data_write_guid: guid_at(b, 32),
            log_guid: guid_at(b, 48),
            log_version: u16_at(b, 64),
            version: u16_at(b, 66),
            log_length: u32_at(b, 68),
            log_offset: u64_at(b, 72),
        })
    }

    /// Checks the fields a valid header must hold beyond its checksum.
    pub fn validate(&self, file: &str, offset: u64) -> VResult<()> {
        if self.version != 1 {
            return Err(VhdxError::unsupported(
                file,
                "header",
                "Version",
                offset + 66,
                "1",
                self.version.to_string(),
            ));
        }
        if self.log_version != 0 {
            return Err(VhdxError::unsupported(
                file,
                "header",
                "LogVersion",
                offset + 64,
                "0",
                self.log_version.to_string(),
            ));
        }
        if u64::from(self.log_length) % ALIGN != 0 {
            return Err(VhdxError::corrupt(
                file,
                "header",
                "LogLength",
                offset + 68,
                "a multiple of 1 MiB",
                self.log_length.to_string(),
            ));
        }
        if !self.log_offset.is_multiple_of(ALIGN)
            || (self.log_length > 0 && self.log_offset < ALIGN)
        {
            return Err(VhdxError::corrupt(
                file,
                "header",
                "LogOffset",
                offset + 72,
                "a multiple of 1 MiB, at least 1 MiB",
                self.log_offset.to_string(),
            ));
        }
        Ok(())
    }
}

/// Picks the current header from the two slots' raw bytes. Returns it and its slot (0 or 1).
pub fn current(file: &str, slots: [&[u8]; 2]) -> VResult<(Header, usize)> {
    let h0 = Header::parse(file, slots[0], HEADER_OFFSETS[0]);
    let h1 = Header::parse(file, slots[1], HEADER_OFFSETS[1]);
    let (h, slot) = match (h0, h1) {
        (Ok(a), Ok(b)) => {
            if a.sequence > b.sequence {
                (a, 0)
            } else if b.sequence > a.sequence {
                (b, 1)
            } else if slots[0].get(..HEADER_SIZE) == slots[1].get(..HEADER_SIZE) {
                (a, 0)
            } else {
                return Err(VhdxError::corrupt(
                    file,
                    "header",
                    "SequenceNumber",
                    HEADER_OFFSETS[1] + 8,
                    "different sequence numbers, or identical headers",
                    format!("two different headers both numbered {}", a.sequence),
                ));
            }
        }
        (Ok(a), Err(_)) => (a, 0),
        (Err(_), Ok(b)) => (b, 1),
        (Err(e), Err(_)) => {
            let found = match e.location() {
                Some(l) => format!("{} {}", l.field, l.found),
                None => e.to_string(),
            };
            return Err(VhdxError::corrupt(
                file,
                "header",
                "both headers",
                HEADER_OFFSETS[0],
                "at least one valid header (signature \"head\" and CRC-32C)",
                format!("neither is valid (header 1: {found})"),
            ));
        }
    };
    h.validate(file, HEADER_OFFSETS[slot])?;
    Ok((h, slot))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(seq: u64) -> Header {
        Header {
            sequence: seq,
            file_write_guid: Uuid::new_v4(),
            data_write_guid: Uuid::new_v4(),
            log_guid: Uuid::nil(),
            log_version: 0,
            version: 1,
            log_length: MIB as u32,
            log_offset: MIB,
        }
    }

    #[test]
    fn higher_sequence_wins_and_bad_checksum_is_skipped() {
        let a = sample(3).to_bytes();
        let mut b = sample(4).to_bytes();
        let (h, slot) = current("f", [&a, &b]).unwrap();
        assert_eq!((h.sequence, slot), (4, 1));
        b[100] ^= 1;
        let (h, slot) = current("f", [&a, &b]).unwrap();
        assert_eq!((h.sequence, slot), (3, 0));
        let mut a2 = a.clone();
        a2[0] = b'x';
        let err = current("f", [&a2, &b]).unwrap_err();
        assert!(err.to_string().contains("both headers"), "{err}");
    }

    #[test]
    fn equal_sequences_need_identical_headers() {
        let a = sample(5).to_bytes();
        assert!(current("f", [&a, &a]).is_ok());
        let b = sample(5).to_bytes();
        assert!(current("f", [&a, &b]).is_err());
    }
}
