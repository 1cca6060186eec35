//! Bounded-size reply messages for list RPCs (cri-api v0.36, KEP-5825).
//!
//! Every list reply is one repeated field (number 1) of items, so a message's encoded size is
//! the sum of its elements' sizes: the field tag, the length prefix and the item. Streamed
//! lists are cut greedily into messages no larger than the limit, each item in exactly one
//! message and in list order; unary lists whose single message would pass the limit are
//! refused with `RESOURCE_EXHAUSTED` naming the streamed twin.

use prost::Message;
use tonic::Status;

use super::status;

/// The encoded size of `item` as one element of a repeated message field numbered below 16
/// (one tag byte).
pub fn element_len(item: &impl Message) -> usize {
    let len = item.encoded_len();
    1 + prost::length_delimiter_len(len) + len
}

/// Cuts `items` into messages whose encoded size is at most `limit`, in order. An item
/// larger than `limit` by itself goes alone in its message (it cannot be split).
pub fn batches<T: Message>(items: Vec<T>, limit: usize) -> Vec<Vec<T>> {
    let mut batches = Vec::new();
    let mut current = Vec::new();
    let mut size = 0;
    for item in items {
        let len = element_len(&item);
        if !current.is_empty() && size + len > limit {
            batches.push(std::mem::take(&mut current));
            size = 0;
        }
        size += len;
        current.push(item);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

/// `reply` when its encoded size is within `limit`; otherwise `RESOURCE_EXHAUSTED` telling
/// the client to use the streamed RPC `streamed` instead of `rpc`.
pub fn fits<T: Message>(reply: T, limit: usize, rpc: &str, streamed: &str) -> Result<T, Status> {
    let size = reply.encoded_len();
    if size > limit {
        return Err(status::reply_too_large(rpc, streamed, size, limit));
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto;

    fn image(n: usize) -> proto::Image {
        proto::Image {
            id: format!("sha256:{n:064x}"),
            repo_tags: vec![format!("example.test/image-{n}:latest")],
            size: n as u64,
            ..Default::default()
        }
    }

    #[test]
    fn five_thousand_records_stream_in_messages_under_the_limit_each_once() {
        let limit = 4096;
        let items: Vec<_> = (0..5000).map(image).collect();
        let total: usize = items.iter().map(element_len).sum();
        let batches = batches(items, limit);
        assert!(batches.len() > 1);
        // Greedy: every message but the last would have overflowed with the next item.
        assert!(batches.len() <= total / (limit / 2) + 1);
        let mut seen = Vec::new();
        for batch in batches {
            let message = proto::StreamImagesResponse { images: batch };
            assert!(message.encoded_len() <= limit, "{}", message.encoded_len());
            assert_eq!(
                message.encoded_len(),
                message.images.iter().map(element_len).sum::<usize>()
            );
            seen.extend(message.images.into_iter().map(|image| image.size));
        }
        let expected: Vec<u64> = (0..5000).collect();
        assert_eq!(seen, expected, "every item once, in order");
    }

    #[test]
    fn empty_lists_make_no_messages_and_big_items_go_alone() {
        assert!(batches(Vec::<proto::Image>::new(), 100).is_empty());
        let big = proto::Image {
            id: "x".repeat(500),
            ..Default::default()
        };
        let batches = batches(vec![image(1), big, image(2)], 200);
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, [1, 1, 1]);
    }

    #[test]
    fn unary_replies_over_the_limit_name_the_streamed_rpc() {
        let reply = proto::ListImagesResponse {
            images: (0..100).map(image).collect(),
        };
        let size = reply.encoded_len();
        assert!(fits(reply.clone(), size, "ListImages", "StreamImages").is_ok());
        let err = fits(reply, size - 1, "ListImages", "StreamImages").unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        assert!(err.message().contains("StreamImages"), "{}", err.message());
        assert!(err.message().contains("ListImages"), "{}", err.message());
    }
}
