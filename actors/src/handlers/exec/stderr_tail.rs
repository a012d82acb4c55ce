//! Reading a child's stderr with bounded memory.
//!
//! Only the end of stderr goes into a failed attempt's message, yet the pipe
//! must be drained to its end, or a chatty child blocks on a full pipe. So the
//! reader keeps the last bytes only: a child that writes gigabytes costs at
//! most a few times the tail's size.

use tokio::io::{AsyncRead, AsyncReadExt};

/// Bytes of stderr kept for the message of a failed attempt.
pub const STDERR_TAIL_BYTES: usize = 4096;

/// Reads `reader` to its end and returns its last `keep` bytes (fewer if it
/// held fewer). Memory held never exceeds `2 * keep` plus one read buffer.
/// A read error ends the reading early; what was kept is returned, since the
/// tail only decorates an error message.
pub async fn read_tail(mut reader: impl AsyncRead + Unpin, keep: usize) -> Vec<u8> {
    let mut chunk = vec![0u8; 8192];
    let mut tail: Vec<u8> = Vec::with_capacity(2 * keep);
    loop {
        let read = match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        let fresh = &chunk[..read];
        if fresh.len() >= keep {
            tail.clear();
            tail.extend_from_slice(&fresh[fresh.len() - keep..]);
            continue;
        }
        // Dropping old bytes only once `2 * keep` is reached keeps the cost of
        // shifting the buffer proportional to what was read.
        if tail.len() + fresh.len() > 2 * keep {
            let excess = tail.len() + fresh.len() - keep;
            tail.drain(..excess.min(tail.len()));
        }
        tail.extend_from_slice(fresh);
    }
    let start = tail.len().saturating_sub(keep);
    tail.split_off(start)
}

/// The tail as text for a message: lossy UTF-8 (the cut may split a
/// character), trimmed.
pub fn as_text(tail: &[u8]) -> String {
    String::from_utf8_lossy(tail).trim().to_string()
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    #[tokio::test]
    async fn keeps_the_last_bytes_of_a_long_stream_in_bounded_memory() {
        // 8 MiB of noise in odd-sized reads, then the line that matters.
        let noise = tokio::io::repeat(b'x').take(8 * 1024 * 1024);
        let stream = noise.chain(&b"\nfatal: quota exceeded\n"[..]);
        let tail = read_tail(stream, 64).await;
        assert_eq!(tail.len(), 64);
        assert!(tail.ends_with(b"\nfatal: quota exceeded\n"));
        assert!(tail.capacity() <= 2 * 64 + 8192, "{}", tail.capacity());
    }

    #[tokio::test]
    async fn a_short_stream_is_kept_whole() {
        assert_eq!(read_tail(&b"short"[..], 64).await, b"short");
        assert_eq!(read_tail(&b""[..], 64).await, b"");
    }

    #[tokio::test]
    async fn many_small_reads_keep_exactly_the_end() {
        let text: Vec<u8> = (0..10_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        // A reader that returns three bytes at a time.
        let (mut writer, reader) = tokio::io::duplex(3);
        let expected = text[text.len() - 100..].to_vec();
        let writing = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            writer.write_all(&text).await.unwrap();
        });
        assert_eq!(read_tail(reader, 100).await, expected);
        writing.await.unwrap();
    }
}
