//! SPDY/3 name/value header blocks: the [`Headers`] type, their wire form (32-bit counts and
//! lengths, several values of one name joined by NUL) and its zlib compression with the
//! SPDY/3 dictionary.
//!
//! A connection has one compression context per direction, shared by every header block it
//! carries (SYN_STREAM, SYN_REPLY, HEADERS): each block is compressed with a zlib sync flush so
//! that it ends on a byte boundary, and the next block continues the same zlib stream. A
//! [`HeaderEncoder`] or [`HeaderDecoder`] is therefore per connection and direction, and an
//! error in one leaves it unusable (the connection must end).

use std::sync::LazyLock;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::error::SpdyError;

/// Ordered name/value pairs of a SPDY header block. Names are lower case (SPDY/3 requires
/// it); the values of a repeated name stay together in insertion order, which is how the wire
/// form carries them (one entry, values joined by NUL).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<(String, Vec<String>)>,
}

impl Headers {
    /// An empty header block.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `value` to `name` (lower-cased). A value containing NUL is several values,
    /// as on the wire.
    pub fn insert(&mut self, name: &str, value: &str) {
        let name = name.to_ascii_lowercase();
        let values = value.split('\0').map(str::to_owned);
        match self.entries.iter_mut().find(|(n, _)| *n == name) {
            Some((_, existing)) => existing.extend(values),
            None => self.entries.push((name, values.collect())),
        }
    }

    /// The first value of `name`, compared case-insensitively.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, values)| values.first())
            .map(String::as_str)
    }

    /// Every name/value pair, a repeated name once per value.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries
            .iter()
            .flat_map(|(name, values)| values.iter().map(move |v| (name.as_str(), v.as_str())))
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.entries.iter().map(|(_, values)| values.len()).sum()
    }

    /// True when there is no pair.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Most name/value entries one block may hold (kubelet's clients send a handful).
pub const MAX_HEADER_ENTRIES: usize = 1024;
/// Largest uncompressed block this side sends: compressed, it stays far below the 24-bit
/// frame length, so a frame never fails after its block went through the zlib context.
pub const MAX_SENT_BLOCK: usize = 1 << 20;

/// The SPDY/3 header compression dictionary (draft 3, section 2.6.10.1): the length-prefixed
/// words below followed by [`DICTIONARY_TAIL`]. Built once; its Adler-32 is
/// [`DICTIONARY_ADLER32`], which zlib streams name in their FDICT header.
static DICTIONARY: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let mut dictionary = Vec::with_capacity(1423);
    for word in DICTIONARY_WORDS {
        let len = u32::try_from(word.len()).unwrap_or(u32::MAX);
        dictionary.extend_from_slice(&len.to_be_bytes());
        dictionary.extend_from_slice(word.as_bytes());
    }
    dictionary.extend_from_slice(DICTIONARY_TAIL.as_bytes());
    dictionary
});

/// The dictionary's Adler-32 checksum, as a zlib FDICT header carries it.
pub const DICTIONARY_ADLER32: u32 = 0xe3c6_a7c2;

/// The length-prefixed part of the dictionary, in order.
const DICTIONARY_WORDS: [&str; 65] = [
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

/// The raw tail of the dictionary: status codes, reason phrases, dates, content types.
const DICTIONARY_TAIL: &str = concat!(
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
    "203 Non-Authoritative Information",
    "204 No Content",
    "301 Moved Permanently",
    "400 Bad Request",
    "401 Unauthorized",
    "403 Forbidden",
    "404 Not Found",
    "500 Internal Server Error",
    "501 Not Implemented",
    "503 Service Unavailable",
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec",
    " 00:00:00",
    " Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,",
    "text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdch",
    "charset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
);

/// The dictionary bytes.
pub fn dictionary() -> &'static [u8] {
    DICTIONARY.as_slice()
}

/// Serialises `headers` into the uncompressed SPDY/3 block form.
pub fn serialize_block(headers: &Headers) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    push_len(&mut out, headers.entries.len());
    for (name, values) in &headers.entries {
        push_len(&mut out, name.len());
        out.extend_from_slice(name.as_bytes());
        let joined = values.join("\0");
        push_len(&mut out, joined.len());
        out.extend_from_slice(joined.as_bytes());
    }
    out
}

fn push_len(out: &mut Vec<u8>, len: usize) {
    // Header blocks are bounded far below 4 GiB by the frame length (24 bits).
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
}

/// Parses an uncompressed block. Names are lower-cased (Go's framer does the same before it
/// complains), a repeated name is merged, and the block must be consumed exactly.
pub fn parse_block(block: &[u8], stream_id: u32) -> Result<Headers, SpdyError> {
    let invalid = |reason| SpdyError::InvalidHeaderBlock { stream_id, reason };
    let mut rest = block;
    let take_u32 = |rest: &mut &[u8]| -> Result<usize, SpdyError> {
        let (word, tail) = rest
            .split_first_chunk::<4>()
            .ok_or(invalid("truncated length field"))?;
        *rest = tail;
        Ok(u32::from_be_bytes(*word) as usize)
    };
    let count = take_u32(&mut rest)?;
    if count > MAX_HEADER_ENTRIES {
        return Err(invalid("too many header entries"));
    }
    let mut headers = Headers::new();
    for _ in 0..count {
        let name_len = take_u32(&mut rest)?;
        if name_len == 0 {
            return Err(invalid("empty header name"));
        }
        let (name, tail) = rest
            .split_at_checked(name_len)
            .ok_or(invalid("truncated header name"))?;
        rest = tail;
        let value_len = take_u32(&mut rest)?;
        let (value, tail) = rest
            .split_at_checked(value_len)
            .ok_or(invalid("truncated header value"))?;
        rest = tail;
        let name = std::str::from_utf8(name).map_err(|_| invalid("header name is not UTF-8"))?;
        let value = std::str::from_utf8(value).map_err(|_| invalid("header value is not UTF-8"))?;
        headers.insert(name, value);
    }
    if !rest.is_empty() {
        return Err(invalid("bytes after the last header entry"));
    }
    Ok(headers)
}

/// The sending side's compression context of one connection.
#[derive(Debug)]
pub struct HeaderEncoder {
    deflate: Compress,
}

impl Default for HeaderEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderEncoder {
    /// A fresh context with the SPDY/3 dictionary.
    pub fn new() -> Self {
        let mut deflate = Compress::new(Compression::default(), true);
        // Fails only on a stream that has already started, which this one has not.
        let _ = deflate.set_dictionary(dictionary());
        Self { deflate }
    }

    /// Compresses one block (sync flush), continuing the connection's zlib stream.
    pub fn encode(&mut self, headers: &Headers, stream_id: u32) -> Result<Vec<u8>, SpdyError> {
        let raw = serialize_block(headers);
        if raw.len() > MAX_SENT_BLOCK || headers.entries.len() > MAX_HEADER_ENTRIES {
            return Err(SpdyError::HeaderBlockTooLarge {
                stream_id,
                max: MAX_SENT_BLOCK,
            });
        }
        let mut out = Vec::with_capacity(raw.len() / 2 + 64);
        let mut input = raw.as_slice();
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.capacity().max(64));
            }
            let before_in = self.deflate.total_in();
            self.deflate
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .map_err(|error| SpdyError::Compression {
                    stream_id,
                    reason: error.to_string(),
                })?;
            let consumed = usize::try_from(self.deflate.total_in() - before_in).unwrap_or(0);
            input = input.get(consumed..).unwrap_or_default();
            // Done when every byte went in and the flush fitted in the output buffer.
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

/// The receiving side's decompression context of one connection.
#[derive(Debug)]
pub struct HeaderDecoder {
    inflate: Decompress,
    max_block: usize,
}

impl HeaderDecoder {
    /// A fresh context that inflates no block beyond `max_block` bytes.
    pub fn new(max_block: usize) -> Self {
        Self {
            inflate: Decompress::new(true),
            max_block,
        }
    }

    /// Inflates and parses one block, continuing the connection's zlib stream. Every input
    /// byte must be consumed (the sender sync-flushed), and the output is bounded by
    /// `max_block`, so a small block cannot inflate into a large allocation.
    pub fn decode(&mut self, compressed: &[u8], stream_id: u32) -> Result<Headers, SpdyError> {
        let raw = self.inflate_block(compressed, stream_id)?;
        parse_block(&raw, stream_id)
    }

    fn inflate_block(&mut self, compressed: &[u8], stream_id: u32) -> Result<Vec<u8>, SpdyError> {
        let zlib_error = |reason: String| SpdyError::Compression { stream_id, reason };
        let limit = self.max_block;
        let mut out: Vec<u8> = Vec::with_capacity((compressed.len() * 4).clamp(64, limit + 1));
        let mut input = compressed;
        loop {
            if out.len() == out.capacity() {
                if out.len() > limit {
                    return Err(SpdyError::HeaderBlockTooLarge {
                        stream_id,
                        max: limit,
                    });
                }
                let grow = out.len().max(256).min(limit + 1 - out.len());
                out.reserve_exact(grow);
            }
            let (before_in, before_out) = (self.inflate.total_in(), self.inflate.total_out());
            let result = self
                .inflate
                .decompress_vec(input, &mut out, FlushDecompress::Sync);
            let consumed = usize::try_from(self.inflate.total_in() - before_in).unwrap_or(0);
            let produced = self.inflate.total_out() - before_out;
            input = input.get(consumed..).unwrap_or_default();
            match result {
                Ok(Status::Ok | Status::BufError) => {}
                Ok(Status::StreamEnd) => {
                    // SPDY never ends the zlib stream; later blocks could not be read.
                    return Err(zlib_error("the header zlib stream ended".to_owned()));
                }
                Err(error) => match error.needs_dictionary() {
                    Some(DICTIONARY_ADLER32) => {
                        self.inflate
                            .set_dictionary(dictionary())
                            .map_err(|error| zlib_error(error.to_string()))?;
                        continue;
                    }
                    Some(other) => {
                        return Err(zlib_error(format!(
                            "the header zlib stream wants dictionary {other:#010x}, not SPDY/3's"
                        )));
                    }
                    None => return Err(zlib_error(error.to_string())),
                },
            }
            if out.len() > limit {
                return Err(SpdyError::HeaderBlockTooLarge {
                    stream_id,
                    max: limit,
                });
            }
            let room_left = out.len() < out.capacity();
            if input.is_empty() && room_left {
                return Ok(out);
            }
            if consumed == 0 && produced == 0 && room_left {
                return Err(zlib_error(
                    "the header block ends inside a compressed symbol".to_owned(),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Headers {
        let mut headers = Headers::new();
        headers.insert("streamType", "stdout");
        headers.insert("port", "8080");
        headers.insert("requestid", "0");
        headers.insert("port", "9090");
        headers
    }

    #[test]
    fn dictionary_is_the_spdy3_one() {
        assert_eq!(dictionary().len(), 1423);
        let mut inflate = Decompress::new(true);
        let adler = inflate.set_dictionary(dictionary());
        // Not all backends report the checksum from inflateSetDictionary before a header.
        let _ = adler;
        // Adler-32 of the bytes, computed here rather than trusted.
        let (mut a, mut b) = (1u32, 0u32);
        for byte in dictionary() {
            a = (a + u32::from(*byte)) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!((b << 16) | a, DICTIONARY_ADLER32);
    }

    #[test]
    fn headers_are_lowercase_grouped_and_case_insensitive() {
        let headers = sample();
        assert_eq!(headers.get("STREAMTYPE"), Some("stdout"));
        assert_eq!(headers.get("port"), Some("8080"));
        let pairs: Vec<_> = headers.iter().collect();
        assert_eq!(
            pairs,
            [
                ("streamtype", "stdout"),
                ("port", "8080"),
                ("port", "9090"),
                ("requestid", "0")
            ]
        );
        assert_eq!(headers.len(), 4);
    }

    #[test]
    fn block_round_trips_and_joins_repeated_values_with_nul() {
        let raw = serialize_block(&sample());
        assert!(raw.windows(9).any(|w| w == b"8080\x009090"));
        assert_eq!(parse_block(&raw, 1).expect("parses"), sample());
        assert_eq!(
            parse_block(&serialize_block(&Headers::new()), 1).expect("empty"),
            Headers::new()
        );
    }

    #[test]
    fn shared_context_across_blocks() {
        let mut encoder = HeaderEncoder::new();
        let mut decoder = HeaderDecoder::new(1 << 16);
        let first = encoder.encode(&sample(), 1).expect("encode");
        let second = encoder.encode(&sample(), 3).expect("encode");
        // The second block refers back to the first: smaller, and useless on its own.
        assert!(second.len() < first.len());
        assert!(HeaderDecoder::new(1 << 16).decode(&second, 3).is_err());
        assert_eq!(decoder.decode(&first, 1).expect("first"), sample());
        assert_eq!(decoder.decode(&second, 3).expect("second"), sample());
        let empty = encoder.encode(&Headers::new(), 5).expect("encode");
        assert_eq!(decoder.decode(&empty, 5).expect("empty"), Headers::new());
    }

    #[test]
    fn first_block_names_the_spdy_dictionary() {
        let block = HeaderEncoder::new().encode(&sample(), 1).expect("encode");
        // zlib header with FDICT set, then the dictionary id.
        assert_eq!(block[1] & 0x20, 0x20);
        assert_eq!(block[2..6], DICTIONARY_ADLER32.to_be_bytes());
        // Sync flush: the block ends on the empty stored block marker.
        assert_eq!(block[block.len() - 4..], [0, 0, 0xff, 0xff]);
    }

    #[test]
    fn decompression_bomb_is_rejected() {
        let mut headers = Headers::new();
        headers.insert("x", &"a".repeat(1000 << 10));
        let block = HeaderEncoder::new().encode(&headers, 1).expect("encode");
        assert!(block.len() < 8 << 10, "{}", block.len());
        let error = HeaderDecoder::new(64 << 10)
            .decode(&block, 1)
            .expect_err("too large");
        assert!(
            matches!(error, SpdyError::HeaderBlockTooLarge { .. }),
            "{error}"
        );
    }

    #[test]
    fn malformed_blocks_are_errors() {
        let cases: [&[u8]; 5] = [
            b"",
            b"\0\0\0\x01",
            b"\0\0\0\x01\0\0\0\0\0\0\0\0",
            b"\0\0\0\x01\0\0\0\x01a\0\0\0\x05ab",
            b"\0\0\0\0extra",
        ];
        for case in cases {
            assert!(parse_block(case, 1).is_err(), "{case:?}");
        }
        assert!(parse_block(b"\xff\xff\xff\xff", 1).is_err());
        assert!(HeaderDecoder::new(1024).decode(b"garbage!", 1).is_err());
    }
}
