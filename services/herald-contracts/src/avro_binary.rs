//! Avro's binary encoding, primitive by primitive (zig-zag varints, length-prefixed strings,
//! blocked arrays), for [`crate::direct_codec`]. The reader trusts nothing: every length is
//! checked against the bytes left, so garbage fails with an error instead of allocating or
//! panicking.

/// Why bytes are not a value of the expected shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BinaryError {
    #[error("the record ends early")]
    Truncated,
    #[error("a varint is longer than 10 bytes")]
    VarintOverflow,
    #[error("an int is out of range ({0})")]
    IntOverflow(i64),
    #[error("a negative length ({0})")]
    NegativeLength(i64),
    #[error("a string is not UTF-8")]
    InvalidUtf8,
    #[error("union branch {0} does not exist")]
    UnionBranch(i64),
    #[error("enum index {index} is out of range (the enum has {symbols} symbols)")]
    EnumIndex { index: i64, symbols: usize },
    #[error("boolean byte {0} is neither 0 nor 1")]
    Boolean(u8),
}

/// Appends Avro binary to a buffer.
#[derive(Debug)]
pub(crate) struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(out: &'a mut Vec<u8>) -> Self {
        Self { out }
    }

    pub(crate) fn long(&mut self, value: i64) {
        let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
        while zigzag >= 0x80 {
            self.out.push((zigzag as u8 & 0x7f) | 0x80);
            zigzag >>= 7;
        }
        self.out.push(zigzag as u8);
    }

    pub(crate) fn int(&mut self, value: i32) {
        self.long(i64::from(value));
    }

    pub(crate) fn boolean(&mut self, value: bool) {
        self.out.push(u8::from(value));
    }

    pub(crate) fn bytes(&mut self, value: &[u8]) {
        self.long(value.len() as i64);
        self.out.extend_from_slice(value);
    }

    pub(crate) fn string(&mut self, value: &str) {
        self.bytes(value.as_bytes());
    }

    /// An enum symbol or union branch by its position.
    pub(crate) fn index(&mut self, index: usize) {
        self.long(index as i64);
    }

    /// A `["null", T]` union.
    pub(crate) fn optional<T>(&mut self, value: Option<T>, write: impl FnOnce(&mut Self, T)) {
        match value {
            None => self.index(0),
            Some(v) => {
                self.index(1);
                write(self, v);
            }
        }
    }

    pub(crate) fn optional_string(&mut self, value: Option<&str>) {
        self.optional(value, Self::string);
    }

    /// An array as one block (what every Avro writer does for small arrays), then the end mark.
    pub(crate) fn array<T>(&mut self, items: &[T], mut write: impl FnMut(&mut Self, &T)) {
        if !items.is_empty() {
            self.long(items.len() as i64);
            for item in items {
                write(self, item);
            }
        }
        self.long(0);
    }
}

/// Reads Avro binary from a slice.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    fn byte(&mut self) -> Result<u8, BinaryError> {
        let (&first, rest) = self.bytes.split_first().ok_or(BinaryError::Truncated)?;
        self.bytes = rest;
        Ok(first)
    }

    pub(crate) fn long(&mut self) -> Result<i64, BinaryError> {
        let mut zigzag = 0u64;
        for shift in (0..70).step_by(7) {
            let byte = self.byte()?;
            zigzag |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok((zigzag >> 1) as i64 ^ -((zigzag & 1) as i64));
            }
        }
        Err(BinaryError::VarintOverflow)
    }

    pub(crate) fn int(&mut self) -> Result<i32, BinaryError> {
        let value = self.long()?;
        i32::try_from(value).map_err(|_| BinaryError::IntOverflow(value))
    }

    pub(crate) fn boolean(&mut self) -> Result<bool, BinaryError> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(BinaryError::Boolean(other)),
        }
    }

    fn length(&mut self) -> Result<usize, BinaryError> {
        let len = self.long()?;
        let len = usize::try_from(len).map_err(|_| BinaryError::NegativeLength(len))?;
        if len > self.bytes.len() {
            return Err(BinaryError::Truncated);
        }
        Ok(len)
    }

    pub(crate) fn bytes(&mut self) -> Result<Vec<u8>, BinaryError> {
        let len = self.length()?;
        let (value, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(value.to_vec())
    }

    pub(crate) fn string(&mut self) -> Result<String, BinaryError> {
        let len = self.length()?;
        let (value, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        std::str::from_utf8(value)
            .map(str::to_owned)
            .map_err(|_| BinaryError::InvalidUtf8)
    }

    /// An index into `0..count` (an enum symbol or a union branch).
    pub(crate) fn index(&mut self, count: usize) -> Result<usize, BinaryError> {
        let index = self.long()?;
        usize::try_from(index)
            .ok()
            .filter(|i| *i < count)
            .ok_or(BinaryError::EnumIndex {
                index,
                symbols: count,
            })
    }

    /// One of `symbols`, by the index the writer wrote.
    pub(crate) fn symbol<T: Copy>(&mut self, symbols: &[T]) -> Result<T, BinaryError> {
        let index = self.index(symbols.len())?;
        Ok(symbols[index])
    }

    /// A `["null", T]` union.
    pub(crate) fn optional<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<T, BinaryError>,
    ) -> Result<Option<T>, BinaryError> {
        match self.long()? {
            0 => Ok(None),
            1 => read(self).map(Some),
            other => Err(BinaryError::UnionBranch(other)),
        }
    }

    pub(crate) fn optional_string(&mut self) -> Result<Option<String>, BinaryError> {
        self.optional(Self::string)
    }

    /// An array in any blocking a writer chose: blocks of `count` items, a negative count
    /// followed by the block's size in bytes, and a zero count at the end.
    pub(crate) fn array<T>(
        &mut self,
        mut read: impl FnMut(&mut Self) -> Result<T, BinaryError>,
    ) -> Result<Vec<T>, BinaryError> {
        let mut items = Vec::new();
        loop {
            let count = match self.long()? {
                0 => return Ok(items),
                n if n < 0 => {
                    let _block_bytes = self.long()?;
                    n.unsigned_abs()
                }
                n => n.unsigned_abs(),
            };
            // Every item takes at least one byte: a count beyond what is left is garbage.
            if count > self.bytes.len() as u64 {
                return Err(BinaryError::Truncated);
            }
            items.reserve(count as usize);
            for _ in 0..count {
                items.push(read(self)?);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(write: impl FnOnce(&mut Writer<'_>)) -> Vec<u8> {
        let mut out = Vec::new();
        write(&mut Writer::new(&mut out));
        out
    }

    #[test]
    fn longs_are_zigzag_varints_as_the_spec_shows() {
        // The examples in the Avro specification's "Binary Encoding" section.
        for (value, bytes) in [
            (0i64, vec![0x00]),
            (-1, vec![0x01]),
            (1, vec![0x02]),
            (-2, vec![0x03]),
            (2, vec![0x04]),
            (-64, vec![0x7f]),
            (64, vec![0x80, 0x01]),
        ] {
            assert_eq!(written(|w| w.long(value)), bytes, "{value}");
            assert_eq!(Reader::new(&bytes).long(), Ok(value));
        }
        for value in [i64::MIN, i64::MAX, i64::from(i32::MIN) - 1] {
            let bytes = written(|w| w.long(value));
            assert_eq!(Reader::new(&bytes).long(), Ok(value));
        }
    }

    #[test]
    fn garbage_fails_without_panicking_or_allocating() {
        assert_eq!(
            Reader::new(&[0x80; 11]).long(),
            Err(BinaryError::VarintOverflow)
        );
        assert_eq!(Reader::new(&[0x80]).long(), Err(BinaryError::Truncated));
        // A string claiming 2^62 bytes.
        let huge = written(|w| w.long(1 << 62));
        assert_eq!(Reader::new(&huge).string(), Err(BinaryError::Truncated));
        assert_eq!(
            Reader::new(&[0x01]).string(),
            Err(BinaryError::NegativeLength(-1))
        );
        assert_eq!(
            Reader::new(&[0x02, 0xff]).string(),
            Err(BinaryError::InvalidUtf8)
        );
        let big_int = written(|w| w.long(i64::from(i32::MAX) + 1));
        assert!(matches!(
            Reader::new(&big_int).int(),
            Err(BinaryError::IntOverflow(_))
        ));
        assert_eq!(Reader::new(&[2]).boolean(), Err(BinaryError::Boolean(2)));
        assert_eq!(
            Reader::new(&[0x04]).optional(Reader::long),
            Err(BinaryError::UnionBranch(2))
        );
        assert!(Reader::new(&[0x0a]).symbol(&[1, 2, 3]).is_err());
        // An array claiming a billion items in three bytes.
        let array = written(|w| w.long(1_000_000_000));
        assert_eq!(
            Reader::new(&array).array(Reader::long),
            Err(BinaryError::Truncated)
        );
    }

    #[test]
    fn arrays_read_in_any_blocking() {
        // Two blocks, the second with a negative count and its byte size, as Java's blocking
        // encoder writes them.
        let bytes = written(|w| {
            w.long(2);
            w.long(1);
            w.long(2);
            w.long(-1);
            w.long(1);
            w.long(3);
            w.long(0);
        });
        assert_eq!(Reader::new(&bytes).array(Reader::long), Ok(vec![1, 2, 3]));
        let one_block = written(|w| w.array(&[1i64, 2, 3], |w, v| w.long(*v)));
        assert_eq!(
            Reader::new(&one_block).array(Reader::long),
            Ok(vec![1, 2, 3])
        );
        assert_eq!(written(|w| w.array::<i64>(&[], |w, v| w.long(*v))), vec![0]);
    }
}
