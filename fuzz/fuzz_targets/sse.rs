//! The SSE framer: splitting a stream anywhere gives the same events, and the events (with
//! what is held at the end) are the stream itself, less a leading BOM.
#![no_main]
use libfuzzer_sys::fuzz_target;
use warden_policy::sse::Framer;

fn frame(parts: &[&[u8]]) -> (Vec<Vec<u8>>, Vec<u8>) {
    let mut framer = Framer::new(1 << 20);
    let mut events = Vec::new();
    for part in parts {
        events.extend(framer.push(part).expect("within the window"));
    }
    (events, framer.finish())
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else { return };
    let whole = frame(&[stream]);
    let at = usize::from(cut) % (stream.len() + 1);
    let at2 = (at + usize::from(cut) * 7) % (stream.len() + 1);
    let (a, b) = (at.min(at2), at.max(at2));
    let split = frame(&[&stream[..a], &stream[a..b], &stream[b..]]);
    assert_eq!(whole, split, "split at {a} and {b}");
    let mut rebuilt: Vec<u8> = whole.0.concat();
    rebuilt.extend(&whole.1);
    let expected = stream.strip_prefix(b"\xEF\xBB\xBF".as_slice()).unwrap_or(stream);
    assert_eq!(rebuilt, expected);
});
