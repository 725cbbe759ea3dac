//! The streaming matcher of `pgvault run`'s masking (SPEC §13): the child's output with every
//! secret value of [`MIN_LEN`] or more bytes replaced by [`MASK`].
//!
//! The output arrives in reads of any size, so a value may be split across reads (or written
//! in two writes with a pause between). The matcher holds back only the bytes at the end of
//! what it has seen that are a proper prefix of some value, and releases them as soon as the
//! next bytes prove they are not the start of a value, or at the end of the output.
//!
//! A pause does not release them: releasing the held bytes when the child stops writing for a
//! while would print the first part of a secret that a slow writer (or a scheduler) splits in
//! two, which is the case masking is for. What can wait is therefore only ever the start of a
//! secret value, at most its length minus one byte; everything else (every line ending that is
//! not the start of a value) is written as soon as it is read. Where one value contains
//! another, the longest wins (leftmost first, then longest).
//!
//! Memory is the read buffer plus at most the longest value: flat for any amount of output.

use aho_corasick::{packed, AhoCorasick, AhoCorasickBuilder, Input, MatchKind, Span};
use zeroize::Zeroizing;

/// What a value becomes in the child's output.
pub const MASK: &[u8] = b"<concealed by pgvault>";
/// Shorter values are not masked: they would conceal ordinary words and numbers.
pub const MIN_LEN: usize = 6;

/// The byte prefixes of the values, as a trie: whether some value goes on after a prefix.
struct Trie {
    /// Per node: (byte, child) sorted by byte.
    children: Vec<Vec<(u8, u32)>>,
    /// Bytes some value starts with (most output bytes fail here, at once).
    first: [bool; 256],
}

impl Trie {
    fn new(values: &[Zeroizing<Vec<u8>>]) -> Trie {
        let mut t = Trie {
            children: vec![Vec::new()],
            first: [false; 256],
        };
        for v in values {
            t.first[usize::from(v[0])] = true;
            let mut node = 0usize;
            for &b in v.iter() {
                node = match t.children[node].binary_search_by_key(&b, |c| c.0) {
                    Ok(i) => t.children[node][i].1 as usize,
                    Err(i) => {
                        let new = t.children.len();
                        t.children[node].insert(i, (b, new as u32));
                        t.children.push(Vec::new());
                        new
                    }
                };
            }
        }
        t
    }

    /// Whether `s` (not empty) is the start of a value that is longer than `s`.
    fn is_proper_prefix(&self, s: &[u8]) -> bool {
        if !self.first[usize::from(s[0])] {
            return false;
        }
        let mut node = 0usize;
        for b in s {
            match self.children[node].binary_search_by_key(b, |c| c.0) {
                Ok(i) => node = self.children[node][i].1 as usize,
                Err(_) => return false,
            }
        }
        !self.children[node].is_empty()
    }
}

/// Finds the leftmost-longest value in a span: the packed SIMD searcher (Teddy) when the
/// values allow it (up to 64 values, on x86_64 and aarch64), measured at 20x the automaton's
/// speed on log lines full of values' first bytes; else the Aho-Corasick automaton.
enum Finder {
    Packed(packed::Searcher),
    Automaton(AhoCorasick),
}

impl Finder {
    fn new(vals: &[Zeroizing<Vec<u8>>]) -> Finder {
        let packed = packed::Config::new()
            .match_kind(packed::MatchKind::LeftmostLongest)
            .builder()
            .extend(vals.iter().map(|v| v.as_slice()))
            .build();
        match packed {
            Some(p) => Finder::Packed(p),
            None => Finder::Automaton(
                AhoCorasickBuilder::new()
                    .match_kind(MatchKind::LeftmostLongest)
                    .build(vals.iter().map(|v| v.as_slice()))
                    .expect("a few values of bounded length always build"),
            ),
        }
    }

    /// (start, end) of the leftmost-longest value in `buf[from..]`.
    fn find(&self, buf: &[u8], from: usize) -> Option<(usize, usize)> {
        let m = match self {
            Finder::Packed(p) => p.find_in(buf, Span::from(from..buf.len())),
            Finder::Automaton(a) => a.find(Input::new(buf).span(from..buf.len())),
        };
        m.map(|m| (m.start(), m.end()))
    }
}

/// The matcher for one output stream.
pub struct Masker {
    /// None when no value is long enough to be masked: output passes unchanged.
    ac: Option<(Finder, Trie, usize)>,
    /// The bytes held back: a proper prefix of some value.
    held: Zeroizing<Vec<u8>>,
}

impl Masker {
    /// A matcher for `values` (those shorter than [`MIN_LEN`] bytes are left out).
    pub fn new<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Masker {
        let mut vals: Vec<Zeroizing<Vec<u8>>> = values
            .into_iter()
            .filter(|v| v.len() >= MIN_LEN)
            .map(|v| Zeroizing::new(v.to_vec()))
            .collect();
        vals.sort_by(|a, b| a.as_slice().cmp(b.as_slice()));
        vals.dedup_by(|a, b| a.as_slice() == b.as_slice());
        if vals.is_empty() {
            return Masker {
                ac: None,
                held: Zeroizing::new(Vec::new()),
            };
        }
        let longest = vals.iter().map(|v| v.len()).max().unwrap_or(0);
        let ac = Finder::new(&vals);
        let trie = Trie::new(&vals);
        Masker {
            ac: Some((ac, trie, longest)),
            held: Zeroizing::new(Vec::with_capacity(longest)),
        }
    }

    /// How many bytes are held back now (a proper prefix of some value).
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Whether `input`, as the next bytes of the stream, goes out exactly as it is: nothing is
    /// held from before, no value is in it and it does not end with the start of one. Then
    /// the caller writes `input` itself (no copy) and the matcher's state is unchanged.
    pub fn passes(&self, input: &[u8]) -> bool {
        match &self.ac {
            None => true,
            Some((finder, trie, longest)) => {
                self.held.is_empty()
                    && hold_start(trie, *longest, input, 0) == input.len()
                    && finder.find(input, 0).is_none()
            }
        }
    }

    /// Takes the next bytes of the stream; appends to `out` what can be written now.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let Some((ac, trie, longest)) = &self.ac else {
            out.extend_from_slice(input);
            return;
        };
        if self.held.is_empty() {
            let keep = scan(ac, trie, *longest, input, out);
            self.held.extend_from_slice(&input[keep..]);
        } else {
            let mut buf = Zeroizing::new(Vec::with_capacity(self.held.len() + input.len()));
            buf.extend_from_slice(&self.held);
            buf.extend_from_slice(input);
            let keep = scan(ac, trie, *longest, &buf, out);
            self.held.clear();
            self.held.extend_from_slice(&buf[keep..]);
        }
    }

    /// The end of the stream: what was held back is not the value it might have started, but
    /// may still hold a shorter one.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if let Some((ac, _, _)) = &self.ac {
            let mut pos = 0;
            while let Some((start, end)) = ac.find(&self.held, pos) {
                out.extend_from_slice(&self.held[pos..start]);
                out.extend_from_slice(MASK);
                pos = end;
            }
            out.extend_from_slice(&self.held[pos..]);
        }
        self.held.clear();
    }
}

/// Writes the final part of `buf` to `out` (values masked) and returns where the held part
/// starts: the earliest position whose rest is a proper prefix of a value.
///
/// A match that starts before that position is final: a longer match at the same start, or an
/// earlier one, would need a proper prefix of a value to start there or earlier.
fn scan(ac: &Finder, trie: &Trie, longest: usize, buf: &[u8], out: &mut Vec<u8>) -> usize {
    let mut pos = 0;
    loop {
        let hold = hold_start(trie, longest, buf, pos);
        match ac.find(buf, pos) {
            Some((start, end)) if start < hold => {
                out.extend_from_slice(&buf[pos..start]);
                out.extend_from_slice(MASK);
                pos = end;
            }
            _ => {
                out.extend_from_slice(&buf[pos..hold]);
                return hold;
            }
        }
    }
}

/// The earliest position at or after `from` where the rest of `buf` is a proper prefix of
/// some value (only the last `longest - 1` bytes can be), else `buf.len()`.
fn hold_start(trie: &Trie, longest: usize, buf: &[u8], from: usize) -> usize {
    let n = buf.len();
    let start = from.max(n.saturating_sub(longest - 1));
    (start..n).find(|&q| trie.is_proper_prefix(&buf[q..])).unwrap_or(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &str = "<concealed by pgvault>";

    /// The output for `chunks` pushed one by one, and what was out after each push.
    fn run(values: &[&[u8]], chunks: &[&[u8]]) -> (Vec<u8>, Vec<Vec<u8>>) {
        let mut m = Masker::new(values.iter().copied());
        let mut out = Vec::new();
        let mut steps = Vec::new();
        for c in chunks {
            m.push(c, &mut out);
            steps.push(out.clone());
        }
        m.finish(&mut out);
        (out, steps)
    }

    fn s(b: &[u8]) -> String {
        String::from_utf8_lossy(b).into_owned()
    }

    #[test]
    fn a_value_is_masked_whole_and_split_at_every_point() {
        let v = b"sk-live-0123456789";
        let text = b"key=sk-live-0123456789 done\n";
        let (out, _) = run(&[v], &[text]);
        assert_eq!(s(&out), format!("key={M} done\n"));
        for cut in 0..=text.len() {
            for cut2 in cut..=text.len() {
                let (out, _) = run(&[v], &[&text[..cut], &text[cut..cut2], &text[cut2..]]);
                assert_eq!(s(&out), format!("key={M} done\n"), "cut at {cut}/{cut2}");
            }
        }
        // One byte at a time.
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(s(&run(&[v], &bytes).0), format!("key={M} done\n"));
    }

    #[test]
    fn only_a_proper_prefix_of_a_value_is_held_back() {
        let v: &[u8] = b"hunter22";
        let (_, steps) = run(&[v], &[b"line one\n", b"partial hun", b"gry\n", b"hunter2", b"2!\n"]);
        // A line that cannot start a value is out at once.
        assert_eq!(s(&steps[0]), "line one\n");
        // "hun" could be the start of the value: held; the rest is out.
        assert_eq!(s(&steps[1]), "line one\npartial ");
        // "hungry" is not: released with the next read.
        assert_eq!(s(&steps[2]), "line one\npartial hungry\n");
        // The value split in two writes: nothing of it is out before its end.
        assert_eq!(s(&steps[3]), "line one\npartial hungry\n");
        assert_eq!(s(&steps[4]), format!("line one\npartial hungry\n{M}!\n"));
    }

    #[test]
    fn a_prefix_left_at_the_end_is_written_at_the_end() {
        let (out, steps) = run(&[b"abcdefgh"], &[b"x abcd"]);
        assert_eq!(s(&steps[0]), "x ");
        assert_eq!(s(&out), "x abcd");
    }

    #[test]
    fn the_longest_wins_where_one_value_contains_another() {
        let short: &[u8] = b"secret";
        let long: &[u8] = b"secret-and-more";
        for chunks in [
            vec![&b"a secret-and-more b secret c"[..]],
            vec![&b"a secret"[..], &b"-and-more b secr"[..], &b"et c"[..]],
        ] {
            let (out, _) = run(&[short, long], &chunks);
            assert_eq!(s(&out), format!("a {M} b {M} c"));
        }
        // A value inside a longer one, the longer one starting earlier.
        let (out, _) = run(&[b"abcdef", b"xxabcdefyy"], &[b"xxabc", b"def", b"yy xxabcdef"]);
        assert_eq!(s(&out), format!("{M} xx{M}"));
        // Overlapping values: the leftmost wins, the rest stays.
        let (out, _) = run(&[b"abcdef", b"defghi"], &[b"abcdefghi"]);
        assert_eq!(s(&out), format!("{M}ghi"));
    }

    #[test]
    fn short_values_are_not_masked_and_no_values_pass_everything() {
        let (out, _) = run(&[b"12345"], &[b"pin 12345"]);
        assert_eq!(s(&out), "pin 12345");
        let mut m = Masker::new(std::iter::empty());
        let mut out = Vec::new();
        m.push(b"anything", &mut out);
        assert_eq!(m.held(), 0);
        assert_eq!(out, b"anything");
    }

    #[test]
    fn binary_output_and_binary_values_are_masked_byte_for_byte() {
        let v: &[u8] = &[0, 159, 146, 150, 255, 0, 7];
        let mut input = Vec::new();
        for i in 0..=255u8 {
            input.push(i);
        }
        input.extend_from_slice(v);
        input.extend_from_slice(&[0xff, 0xfe, 0]);
        let expect = {
            let mut e = input[..256].to_vec();
            e.extend_from_slice(MASK);
            e.extend_from_slice(&[0xff, 0xfe, 0]);
            e
        };
        for cut in 0..input.len() {
            let (out, _) = run(&[v], &[&input[..cut], &input[cut..]]);
            assert_eq!(out, expect, "cut at {cut}");
        }
    }

    #[test]
    fn more_values_than_the_packed_searcher_takes_use_the_automaton() {
        let many: Vec<Vec<u8>> = (0..100).map(|i| format!("value-{i:03}-secret").into_bytes()).collect();
        let m = Masker::new(many.iter().map(|v| v.as_slice()));
        assert!(matches!(m.ac, Some((Finder::Automaton(_), _, _))));
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("ssse3") {
            let few = Masker::new(many[..2].iter().map(|v| v.as_slice()));
            assert!(matches!(few.ac, Some((Finder::Packed(_), _, _))));
        }
        let refs: Vec<&[u8]> = many.iter().map(|v| v.as_slice()).collect();
        let (out, _) = run(&refs, &[b"a value-042-sec", b"ret b value-099-secret", b"-and-more"]);
        assert_eq!(s(&out), format!("a {M} b {M}-and-more"));
    }

    #[test]
    fn only_output_without_values_or_their_starts_passes_unchanged() {
        let mut m = Masker::new([&b"hunter22"[..]]);
        assert!(m.passes(b"plain text\n"));
        assert!(!m.passes(b"a hunter22 b"));
        assert!(!m.passes(b"ends with hun"));
        let mut out = Vec::new();
        m.push(b"hun", &mut out);
        assert!(!m.passes(b"gry"), "something is held");
        m.push(b"gry", &mut out);
        assert!(m.passes(b"plain"));
        assert_eq!(s(&out), "hungry");
    }

    #[test]
    fn memory_stays_flat_the_held_part_is_never_longer_than_a_value() {
        let v: &[u8] = b"aaaaaaaab";
        let mut m = Masker::new([v]);
        let mut out = Vec::new();
        let mut total = 0;
        for _ in 0..1000 {
            m.push(&[b'a'; 1000], &mut out);
            assert!(m.held() < v.len());
            total += out.len();
            out.clear();
        }
        m.finish(&mut out);
        assert_eq!(total + out.len(), 1_000_000);
    }
}
