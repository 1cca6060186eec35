//! Byte-level mutations shared by every target: the classic havoc operations (flip, set,
//! insert, delete, duplicate, splice) plus insertion of target-specific dictionary tokens.

use super::rng::Rng;

/// Bytes that parsers of names, paths and numbers treat specially.
const SPECIAL_BYTES: &[u8] = b"\0\x01\x7f\x80\xff/\\.:@[]{}\"',;=-_ \t\n\r%#?*0179aAzZ";

/// Applies between 1 and `max_ops` random mutations to `data`, never growing it past
/// `max_len`. `dictionary` holds tokens worth inserting as a whole.
pub fn mutate(
    rng: &mut Rng,
    data: &mut Vec<u8>,
    dictionary: &[&[u8]],
    max_ops: usize,
    max_len: usize,
) {
    let ops = rng.range(1, max_ops.max(1));
    for _ in 0..ops {
        mutate_once(rng, data, dictionary, max_len);
    }
}

fn mutate_once(rng: &mut Rng, data: &mut Vec<u8>, dictionary: &[&[u8]], max_len: usize) {
    let len = data.len();
    match rng.below(11) {
        // Flip one bit.
        0 if len > 0 => {
            let at = rng.below(len);
            data[at] ^= 1 << rng.below(8);
        }
        // Overwrite one byte with a random or a special one.
        1 if len > 0 => {
            let at = rng.below(len);
            data[at] = if rng.one_in(2) {
                rng.byte()
            } else {
                rng.pick(SPECIAL_BYTES)
            };
        }
        // Insert random bytes.
        2 => {
            let count = rng.length(32).max(1);
            let at = rng.below(len + 1);
            let bytes: Vec<u8> = (0..count).map(|_| rng.byte()).collect();
            insert(data, at, &bytes, max_len);
        }
        // Insert a dictionary token.
        3 | 4 if !dictionary.is_empty() => {
            let token = rng.pick(dictionary);
            let at = rng.below(len + 1);
            insert(data, at, token, max_len);
        }
        // Overwrite with a dictionary token.
        5 if !dictionary.is_empty() && len > 0 => {
            let token = rng.pick(dictionary);
            let at = rng.below(len);
            for (offset, &byte) in token.iter().enumerate() {
                match data.get_mut(at + offset) {
                    Some(slot) => *slot = byte,
                    None => break,
                }
            }
        }
        // Delete a range.
        6 if len > 0 => {
            let at = rng.below(len);
            let count = rng.length(len - at).max(1).min(len - at);
            data.drain(at..at + count);
        }
        // Duplicate a range somewhere else.
        7 if len > 0 => {
            let from = rng.below(len);
            let count = rng.length(len - from).max(1).min(len - from);
            let chunk = data[from..from + count].to_vec();
            let at = rng.below(len + 1);
            insert(data, at, &chunk, max_len);
        }
        // Truncate.
        8 if len > 0 => {
            data.truncate(rng.below(len));
        }
        // Repeat one byte many times (long runs find length limits).
        9 if len > 0 => {
            let at = rng.below(len);
            let byte = data[at];
            let count = rng.range(1, 300);
            insert(data, at, &vec![byte; count], max_len);
        }
        // Replace a range with a copy of another range of the same length.
        10 if len > 1 => {
            let count = rng.range(1, len / 2);
            let from = rng.below(len - count + 1);
            let to = rng.below(len - count + 1);
            let chunk = data[from..from + count].to_vec();
            data[to..to + count].copy_from_slice(&chunk);
        }
        _ => {
            // The chosen operation does not apply to this input: append a byte instead.
            if len < max_len {
                data.push(rng.pick(SPECIAL_BYTES));
            }
        }
    }
}

fn insert(data: &mut Vec<u8>, at: usize, bytes: &[u8], max_len: usize) {
    let room = max_len.saturating_sub(data.len());
    let bytes = &bytes[..bytes.len().min(room)];
    let tail = data.split_off(at);
    data.extend_from_slice(bytes);
    data.extend_from_slice(&tail);
}

/// Renders `data` for a failure message: printable ASCII as is, the rest escaped, cut to
/// `max` bytes.
pub fn preview(data: &[u8], max: usize) -> String {
    let mut text: String = data[..data.len().min(max)]
        .escape_ascii()
        .map(char::from)
        .collect();
    if data.len() > max {
        text.push_str(&format!("… ({} bytes in all)", data.len()));
    }
    text
}
