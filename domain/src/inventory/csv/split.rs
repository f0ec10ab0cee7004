//! Splits inventory CSV text into rows.
//!
//! AWS quotes every field, and no field holds a quote, a comma or a line break (keys are
//! URL-encoded), so a row is found by two searches: its line end, then its quotes. Any
//! other shape (unquoted or escaped fields, a line break inside quotes, spaces around a field,
//! a line longer than the buffer) is handed to `csv_core` from the row's first byte, which reads
//! it as the `csv` crate does. `rows_match_the_csv_crate` holds the two paths to the same rows.
//! The byte-at-a-time parser was a tenth of a CSV report's CPU.

use std::io::{self, Read};
use std::ops::Range;

/// Bytes read from the source at once.
pub(super) const BUFFER_BYTES: usize = 256 * 1024;

/// Rows of CSV text read from `source`.
pub(super) struct RowSplitter<R> {
    source: R,
    buffer: Vec<u8>,
    /// Unread bytes are `buffer[start..end]`.
    start: usize,
    end: usize,
    at_eof: bool,
    /// The last row's fields, into its text.
    bounds: Vec<Range<usize>>,
    /// The parser for rows of any other shape, its decoded fields and their ends.
    core: csv_core::Reader,
    decoded: Vec<u8>,
    ends: Vec<usize>,
}

/// One row: its fields are `text[range(i)]`. (No `Debug`: a row's text is data.)
#[derive(Clone, Copy)]
pub(super) struct Row<'a> {
    text: &'a [u8],
    bounds: &'a [Range<usize>],
}

impl<'a> Row<'a> {
    pub(super) fn len(&self) -> usize {
        self.bounds.len()
    }

    /// Text that holds every field, and only ASCII between them: valid UTF-8 when every field
    /// is, so one check can serve the whole row.
    pub(super) fn text(&self) -> &'a [u8] {
        self.text
    }

    pub(super) fn range(&self, i: usize) -> Option<Range<usize>> {
        self.bounds.get(i).cloned()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        let text = self.text;
        self.bounds.iter().map(move |r| &text[r.clone()])
    }
}

impl<R: Read> RowSplitter<R> {
    pub(super) fn new(source: R) -> Self {
        Self::with_buffer(source, BUFFER_BYTES)
    }

    fn with_buffer(source: R, bytes: usize) -> Self {
        Self {
            source,
            buffer: vec![0; bytes.max(1)],
            start: 0,
            end: 0,
            at_eof: false,
            bounds: Vec::new(),
            core: csv_core::Reader::new(),
            decoded: vec![0; 1024],
            ends: vec![0; 32],
        }
    }

    /// The next row, `None` at the end of the text. An error is the source's; reading should
    /// stop there.
    pub(super) fn next_row(&mut self) -> io::Result<Option<Row<'_>>> {
        loop {
            let unread = &self.buffer[self.start..self.end];
            let (line_len, consumed) = match memchr::memchr(b'\n', unread) {
                Some(at) => (at, at + 1),
                None if self.at_eof && unread.is_empty() => return Ok(None),
                None if self.at_eof => (unread.len(), unread.len()),
                // A line longer than the buffer: csv_core reads it through.
                None if self.start == 0 && self.end == self.buffer.len() => return self.next_row_by_core(),
                None => {
                    self.refill()?;
                    continue;
                }
            };
            let line_start = self.start;
            let mut line = &unread[..line_len];
            if let [before @ .., b'\r'] = line {
                line = before;
            }
            if line.is_empty() {
                // csv_core yields no row for an empty line either.
                self.start += consumed;
                continue;
            }
            if !split_quoted(line, unread, &mut self.bounds) {
                return self.next_row_by_core();
            }
            self.start += consumed;
            let text = &self.buffer[line_start..line_start + line.len()];
            return Ok(Some(Row { text, bounds: &self.bounds }));
        }
    }

    /// Reads one row with csv_core, from a row's first byte.
    fn next_row_by_core(&mut self) -> io::Result<Option<Row<'_>>> {
        use csv_core::ReadRecordResult;
        self.core.reset();
        let (mut written, mut ended) = (0, 0);
        loop {
            // Empty input (at the end of the source) is csv_core's end of text.
            let (result, read, out, ends) = self.core.read_record(
                &self.buffer[self.start..self.end],
                &mut self.decoded[written..],
                &mut self.ends[ended..],
            );
            self.start += read;
            written += out;
            ended += ends;
            match result {
                ReadRecordResult::InputEmpty => {
                    if !self.at_eof {
                        self.refill()?;
                    }
                }
                ReadRecordResult::OutputFull => self.decoded.resize(self.decoded.len() * 2, 0),
                ReadRecordResult::OutputEndsFull => self.ends.resize(self.ends.len() * 2, 0),
                ReadRecordResult::Record => {
                    self.bounds.clear();
                    let mut from = 0;
                    for &end in &self.ends[..ended] {
                        self.bounds.push(from..end);
                        from = end;
                    }
                    return Ok(Some(Row { text: &self.decoded[..written], bounds: &self.bounds }));
                }
                ReadRecordResult::End => return Ok(None),
            }
        }
    }

    /// Moves the unread bytes to the front and reads more after them (`at_eof` once the source
    /// ends). Called with room in the buffer.
    fn refill(&mut self) -> io::Result<()> {
        if self.start > 0 {
            self.buffer.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        loop {
            match self.source.read(&mut self.buffer[self.end..]) {
                Ok(0) => self.at_eof = true,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            return Ok(());
        }
    }
}

/// The fields of `"f1","f2",…,"fn"` (no quote inside a field) into `bounds`; false for a line of
/// any other shape. `line` starts `buffered`, whose bytes after it may be read but are ignored.
fn split_quoted(line: &[u8], buffered: &[u8], bounds: &mut Vec<Range<usize>>) -> bool {
    bounds.clear();
    let mut quotes = QuotePositions::new(buffered, line.len());
    let mut open_at = 0;
    while let (Some(open), Some(close)) = (quotes.next(), quotes.next()) {
        if open != open_at {
            return false;
        }
        bounds.push(open + 1..close);
        match line.get(close + 1) {
            None => return true,
            Some(b',') => open_at = close + 2,
            Some(_) => return false,
        }
    }
    false
}

/// The positions of `"` in a line, eight bytes at a time. Quotes are a few bytes apart, where
/// a vector search spends more on setting up each call than on searching.
struct QuotePositions<'a> {
    /// The line, and bytes after it that words may be loaded from (and then masked off).
    bytes: &'a [u8],
    len: usize,
    /// Offset of the word in `mask`.
    word_at: usize,
    /// The high bit of each byte of the word that is a quote.
    mask: u64,
}

impl<'a> QuotePositions<'a> {
    const HIGH: u64 = 0x8080_8080_8080_8080;

    /// Quotes in the first `len` bytes of `bytes`.
    fn new(bytes: &'a [u8], len: usize) -> Self {
        let len = len.min(bytes.len());
        let mask = Self::quotes_in(bytes, len, 0);
        Self { bytes, len, word_at: 0, mask }
    }

    /// The quote mask of the eight bytes at `at`, those from `len` on masked off.
    fn quotes_in(bytes: &[u8], len: usize, at: usize) -> u64 {
        let word = match bytes.get(at..at + 8) {
            Some(whole) => whole.try_into().unwrap_or_default(),
            // Only at the end of what is buffered (zeros match nothing).
            None => {
                let mut word = [0u8; 8];
                let tail = bytes.get(at..).unwrap_or_default();
                word[..tail.len()].copy_from_slice(tail);
                word
            }
        };
        // Zero where the byte is a quote; then the high bit of every zero byte, exactly (no
        // carry crosses a byte: each sum is at most 0xFE).
        let x = u64::from_le_bytes(word) ^ (u64::from(b'"') * 0x0101_0101_0101_0101);
        let quotes = !(((x & !Self::HIGH) + !Self::HIGH) | x) & Self::HIGH;
        match len.saturating_sub(at) {
            in_line @ 0..8 => quotes & ((1u64 << (in_line * 8)) - 1),
            _ => quotes,
        }
    }
}

impl Iterator for QuotePositions<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        while self.mask == 0 {
            self.word_at += 8;
            if self.word_at >= self.len {
                return None;
            }
            self.mask = Self::quotes_in(self.bytes, self.len, self.word_at);
        }
        let at = self.word_at + (self.mask.trailing_zeros() / 8) as usize;
        self.mask &= self.mask - 1;
        Some(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every row of `text` as the `csv` crate reads it (no headers, rows of any length).
    fn csv_crate_rows(text: &[u8]) -> Vec<Vec<Vec<u8>>> {
        let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(text);
        reader.byte_records().map(|r| r.unwrap().iter().map(<[u8]>::to_vec).collect()).collect()
    }

    fn split_rows(text: &[u8], buffer: usize) -> Vec<Vec<Vec<u8>>> {
        let mut splitter = RowSplitter::with_buffer(text, buffer);
        let mut rows = Vec::new();
        while let Some(row) = splitter.next_row().unwrap() {
            assert_eq!(row.iter().count(), row.len());
            for (i, field) in row.iter().enumerate() {
                assert_eq!(&row.text()[row.range(i).unwrap()], field);
            }
            rows.push(row.iter().map(<[u8]>::to_vec).collect());
        }
        rows
    }

    #[test]
    fn aws_rows_split_on_quotes() {
        let text = b"\"src\",\"a%2Fb+c\",\"12\",\"\"\n\"src\",\"k\",\"3\",\"x\"\r\n\n\"src\",\"last\"";
        let rows = split_rows(text, BUFFER_BYTES);
        let fields: Vec<Vec<&[u8]>> = rows.iter().map(|r| r.iter().map(Vec::as_slice).collect()).collect();
        assert_eq!(
            fields,
            vec![
                vec![&b"src"[..], b"a%2Fb+c", b"12", b""],
                vec![&b"src"[..], b"k", b"3", b"x"],
                vec![&b"src"[..], b"last"],
            ]
        );
    }

    #[test]
    fn other_shapes_are_read_as_the_csv_crate_reads_them() {
        for text in [
            &b"src,a,1\nsrc,b,2\n"[..],
            b"\"a \"\"quoted\"\" word\",\"b\"\n",
            b"\"line\nbreak\",\"x\"\n\"next\"\n",
            b"\"a\", \"b\"\n\"a\",\n,\n",
            b"\"a\"\r\"b\"\r\n\"c\"",
            b"\"unterminated\n",
        ] {
            assert_eq!(
                split_rows(text, BUFFER_BYTES),
                csv_crate_rows(text),
                "{:?}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn a_line_longer_than_the_buffer_is_read_whole() {
        let long = format!("\"{}\",\"{}\"\n\"b\"\n", "k".repeat(100), "v".repeat(50));
        assert_eq!(split_rows(long.as_bytes(), 16), csv_crate_rows(long.as_bytes()));
    }

    #[test]
    fn quote_positions_are_every_quote_in_order() {
        for len in 0..40 {
            for quotes in [vec![], vec![0], (0..len).step_by(3).collect(), (0..len).collect::<Vec<_>>()] {
                let mut line = vec![b'a'; len];
                // Bytes that differ from a quote in one bit each, and one with the high bit set.
                for (i, b) in line.iter_mut().enumerate() {
                    *b = [b'a', b'"' ^ 1, b'"' ^ 0x80, b'#', 0xA2][i % 5];
                }
                let quotes: Vec<usize> = quotes.into_iter().filter(|&q| q < len).collect();
                for &q in &quotes {
                    line[q] = b'"';
                }
                assert_eq!(QuotePositions::new(&line, len).collect::<Vec<_>>(), quotes, "{line:?}");
                // Bytes after the line are not the line's.
                let mut longer = line.clone();
                longer.extend_from_slice(b"\"\"\"\"\"\"\"\"\"");
                assert_eq!(QuotePositions::new(&longer, len).collect::<Vec<_>>(), quotes, "{line:?}");
            }
        }
    }

    proptest! {
        /// Both paths give the rows the `csv` crate gives, for text of AWS's shape mixed with
        /// every byte that matters to CSV, at any buffer size.
        #[test]
        fn rows_match_the_csv_crate(
            pieces in proptest::collection::vec(prop_oneof![
                4 => "\"[a-z%+/ ]{0,6}\"".prop_map(String::into_bytes),
                2 => Just(b",".to_vec()),
                2 => Just(b"\n".to_vec()),
                1 => Just(b"\r\n".to_vec()),
                1 => Just(b"\r".to_vec()),
                1 => Just(b"\"".to_vec()),
                1 => Just(b" ".to_vec()),
                1 => "[a-z]{1,3}".prop_map(String::into_bytes),
                1 => proptest::collection::vec(any::<u8>(), 1..3),
            ], 0..40),
            buffer in prop_oneof![Just(BUFFER_BYTES), 1usize..24],
        ) {
            let text = pieces.concat();
            prop_assert_eq!(split_rows(&text, buffer), csv_crate_rows(&text));
        }
    }
}
