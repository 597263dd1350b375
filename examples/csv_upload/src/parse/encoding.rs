//! The text encoding of an export, found from its first bytes, and a reader that gives the
//! CSV reader UTF-8 (or an ASCII-compatible 8-bit text) whatever the file holds.
//!
//! - A byte-order mark decides: UTF-8, UTF-16 LE or UTF-16 BE.
//! - Without one, UTF-16 shows as a NUL in every other byte (ASCII text in two bytes).
//! - Otherwise the text is UTF-8 when its first bytes are valid UTF-8, else Windows-1252
//!   (the superset of ISO-8859-1 that German and French exports are written in). A field of
//!   a UTF-8 file that is not valid UTF-8 is read as Windows-1252 too: some exports mix them.
//!
//! UTF-16 is transcoded to UTF-8 as it is read, so positions ([`super::ResumePoint`]) of a
//! UTF-16 file count bytes of that UTF-8 text; seeking to one decodes again from the start.
//! The 8-bit encodings are read as they are: their positions are bytes of the file.

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use encoding_rs::{CoderResult, Decoder, Encoding, UTF_16BE, UTF_16LE, WINDOWS_1252};

/// How the bytes of an export are text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextEncoding {
    /// UTF-8 (a field that is not valid UTF-8 is read as Windows-1252).
    Utf8,
    /// UTF-16, little-endian (Windows' "Unicode").
    Utf16Le,
    /// UTF-16, big-endian.
    Utf16Be,
    /// Windows-1252 / ISO-8859-1.
    Windows1252,
}

impl TextEncoding {
    /// A short name: `UTF-8`, `UTF-16LE`, `UTF-16BE`, `windows-1252`.
    pub fn name(self) -> &'static str {
        match self {
            TextEncoding::Utf8 => "UTF-8",
            TextEncoding::Utf16Le => "UTF-16LE",
            TextEncoding::Utf16Be => "UTF-16BE",
            TextEncoding::Windows1252 => "windows-1252",
        }
    }

    fn utf16(self) -> Option<&'static Encoding> {
        match self {
            TextEncoding::Utf16Le => Some(UTF_16LE),
            TextEncoding::Utf16Be => Some(UTF_16BE),
            _ => None,
        }
    }

    /// Turns one field, as the CSV reader gives it, into text.
    pub fn decode(self, bytes: &[u8]) -> Cow<'_, str> {
        if self == TextEncoding::Windows1252 {
            return WINDOWS_1252.decode_without_bom_handling(bytes).0;
        }
        match std::str::from_utf8(bytes) {
            Ok(s) => Cow::Borrowed(s),
            Err(_) => WINDOWS_1252.decode_without_bom_handling(bytes).0,
        }
    }
}

/// Whether `head` (the first bytes of a file) looks like UTF-16 text: a UTF-16 byte-order
/// mark, or a NUL in most bytes on one side of each pair and in few on the other.
///
/// ```
/// use csv_upload::parse::looks_like_utf16;
/// assert!(looks_like_utf16(b"D\0a\0t\0e\0,\0A\0m\0o\0u\0n\0t\0\n\0"));
/// assert!(!looks_like_utf16(b"\x89PNG\r\n\x1a\n\0\0"));
/// ```
pub fn looks_like_utf16(head: &[u8]) -> bool {
    detect(head).0.utf16().is_some()
}

/// The encoding of a file from its first bytes, and the length of its byte-order mark.
pub(crate) fn detect(head: &[u8]) -> (TextEncoding, usize) {
    if head.starts_with(b"\xEF\xBB\xBF") {
        return (TextEncoding::Utf8, 3);
    }
    if head.starts_with(b"\xFF\xFE") {
        return (TextEncoding::Utf16Le, 2);
    }
    if head.starts_with(b"\xFE\xFF") {
        return (TextEncoding::Utf16Be, 2);
    }
    let sample = &head[..head.len().min(4096) & !1];
    let pairs = sample.len() / 2;
    if pairs >= 2 {
        let even = sample.iter().step_by(2).filter(|b| **b == 0).count();
        let odd = sample
            .iter()
            .skip(1)
            .step_by(2)
            .filter(|b| **b == 0)
            .count();
        // ASCII in UTF-16: the high byte is NUL. Allow some non-ASCII characters.
        if odd * 10 >= pairs * 6 && even * 20 <= pairs {
            return (TextEncoding::Utf16Le, 0);
        }
        if even * 10 >= pairs * 6 && odd * 20 <= pairs {
            return (TextEncoding::Utf16Be, 0);
        }
    }
    match std::str::from_utf8(head) {
        Ok(_) => (TextEncoding::Utf8, 0),
        // Cut in the middle of a character at the end of the sample: still UTF-8.
        Err(e) if e.error_len().is_none() => (TextEncoding::Utf8, 0),
        Err(_) => (TextEncoding::Windows1252, 0),
    }
}

/// The bytes of a file as the CSV reader reads them: the file itself, or its UTF-16
/// transcoded to UTF-8.
#[derive(Debug)]
pub(crate) enum Source {
    /// UTF-8 or an 8-bit encoding: read as is.
    Plain(File),
    /// UTF-16: transcoded.
    Utf16(Utf16Reader),
}

impl Source {
    /// Opens `path` to be read as `encoding`.
    pub(crate) fn open(path: &Path, encoding: TextEncoding) -> io::Result<Source> {
        let file = File::open(path)?;
        Ok(match encoding.utf16() {
            Some(enc) => Source::Utf16(Utf16Reader::new(file, enc)),
            None => Source::Plain(file),
        })
    }
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Source::Plain(f) => f.read(buf),
            Source::Utf16(r) => r.read(buf),
        }
    }
}

impl Seek for Source {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        match self {
            Source::Plain(f) => f.seek(pos),
            Source::Utf16(r) => r.seek(pos),
        }
    }
}

/// UTF-16 read as UTF-8 (a byte-order mark, if any, is dropped).
#[derive(Debug)]
pub(crate) struct Utf16Reader {
    file: BufReader<File>,
    encoding: &'static Encoding,
    decoder: Decoder,
    raw: Vec<u8>,
    out: Vec<u8>,
    out_start: usize,
    /// Bytes of UTF-8 handed out so far.
    pos: u64,
    eof: bool,
}

impl Utf16Reader {
    fn new(file: File, encoding: &'static Encoding) -> Self {
        Utf16Reader {
            file: BufReader::with_capacity(64 * 1024, file),
            encoding,
            decoder: encoding.new_decoder_with_bom_removal(),
            raw: vec![0; 16 * 1024],
            out: Vec::with_capacity(32 * 1024),
            out_start: 0,
            pos: 0,
            eof: false,
        }
    }

    /// Decodes the next chunk into `out`; `false` at the end of the file.
    fn fill(&mut self) -> io::Result<bool> {
        while self.out_start >= self.out.len() {
            if self.eof {
                return Ok(false);
            }
            let n = self.file.read(&mut self.raw)?;
            let last = n == 0;
            self.eof = last;
            self.out.clear();
            self.out_start = 0;
            let need = self.decoder.max_utf8_buffer_length(n).unwrap_or(n * 3 + 16);
            self.out.resize(need, 0);
            let (result, read, written, _) =
                self.decoder
                    .decode_to_utf8(&self.raw[..n], &mut self.out, last);
            debug_assert!(matches!(result, CoderResult::InputEmpty) && read == n);
            self.out.truncate(written);
        }
        Ok(true)
    }
}

impl Read for Utf16Reader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || !self.fill()? {
            return Ok(0);
        }
        let avail = &self.out[self.out_start..];
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.out_start += n;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for Utf16Reader {
    /// Only `SeekFrom::Start` and `SeekFrom::Current(0)`: a position in the decoded text is
    /// reached by decoding from the start.
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let target = match pos {
            SeekFrom::Start(n) => n,
            SeekFrom::Current(0) => return Ok(self.pos),
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "a UTF-16 file is only read from a position from its start",
                ))
            }
        };
        self.file.seek(SeekFrom::Start(0))?;
        self.decoder = self.encoding.new_decoder_with_bom_removal();
        self.out.clear();
        self.out_start = 0;
        self.pos = 0;
        self.eof = false;
        let mut skip = target;
        while skip > 0 {
            if !self.fill()? {
                break;
            }
            let n = ((self.out.len() - self.out_start) as u64).min(skip);
            self.out_start += n as usize;
            self.pos += n;
            skip -= n;
        }
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16le(s: &str, bom: bool) -> Vec<u8> {
        let mut v = if bom { vec![0xFF, 0xFE] } else { vec![] };
        for u in s.encode_utf16() {
            v.extend(u.to_le_bytes());
        }
        v
    }

    fn utf16be(s: &str, bom: bool) -> Vec<u8> {
        let mut v = if bom { vec![0xFE, 0xFF] } else { vec![] };
        for u in s.encode_utf16() {
            v.extend(u.to_be_bytes());
        }
        v
    }

    #[test]
    fn detection() {
        let text = "Datum;Betrag\n01.03.2024;-3,20 Café\n";
        assert_eq!(detect(text.as_bytes()), (TextEncoding::Utf8, 0));
        let mut bom = b"\xEF\xBB\xBF".to_vec();
        bom.extend(text.as_bytes());
        assert_eq!(detect(&bom), (TextEncoding::Utf8, 3));
        assert_eq!(detect(&utf16le(text, true)), (TextEncoding::Utf16Le, 2));
        assert_eq!(detect(&utf16be(text, true)), (TextEncoding::Utf16Be, 2));
        assert_eq!(detect(&utf16le(text, false)), (TextEncoding::Utf16Le, 0));
        assert_eq!(detect(&utf16be(text, false)), (TextEncoding::Utf16Be, 0));
        assert_eq!(
            detect(b"Date;Payee\n01.03.2024;Caf\xe9 M\xfcller\n"),
            (TextEncoding::Windows1252, 0)
        );
        // Cut inside `é` at the end of the sample: still UTF-8.
        assert_eq!(detect(&"abcé".as_bytes()[..4]), (TextEncoding::Utf8, 0));
        assert!(!looks_like_utf16(b"\x89PNG\r\n\x1a\n\0\0"));
        assert!(!looks_like_utf16(b"\0\0\0\0\0\0"));
    }

    #[test]
    fn decoding_fields() {
        assert_eq!(TextEncoding::Utf8.decode("Müller".as_bytes()), "Müller");
        assert_eq!(TextEncoding::Utf8.decode(b"M\xfcller"), "Müller");
        assert_eq!(TextEncoding::Windows1252.decode(b"\x80 5"), "€ 5");
        assert_eq!(TextEncoding::Windows1252.decode(b"Libell\xe9"), "Libellé");
    }

    #[test]
    fn utf16_is_read_as_utf8_and_seeks_by_decoded_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u16.csv");
        let text = "Date,Payee\n2024-03-01,Café\n2024-03-02,Zürich\n";
        std::fs::write(&path, utf16be(text, true)).unwrap();
        let mut src = Source::open(&path, TextEncoding::Utf16Be).unwrap();
        let mut out = String::new();
        src.read_to_string(&mut out).unwrap();
        assert_eq!(out, text);
        let at = text.find("2024-03-02").unwrap() as u64;
        assert_eq!(src.seek(SeekFrom::Start(at)).unwrap(), at);
        let mut rest = String::new();
        src.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "2024-03-02,Zürich\n");
        assert!(src.seek(SeekFrom::End(0)).is_err());
    }
}
