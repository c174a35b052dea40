//! The text as a model reads it. A model ignores invisible characters and reads a fullwidth
//! `＠` or `４` as `@` or `4`, so detectors scan a normalised view: default-ignorable code points
//! (zero-width space and joiners, soft hyphen, bidi controls, variation selectors) removed, each
//! character whose NFKC form is ASCII replaced by it (fullwidth and mathematical letters and
//! digits, superscripts, circled and parenthesised numbers, no-break spaces), and Unicode tag
//! characters read as the ASCII they shadow. Other characters stay as they are, so text in other
//! scripts is scanned exactly as before. A finding in the view maps back to the original bytes
//! that produced it, so what is masked is what the client sent, invisible characters included.

#[path = "fold_table.rs"]
mod table;

/// What one character becomes in the view.
enum Fold {
    Drop,
    Ascii(u8),
    Text(&'static str),
}

/// Code points per block of [`BLOCKS`] (log2).
const BLOCK: u32 = 6;

/// One bit per block of 64 code points: set when some character of the block folds. Text in
/// other scripts (Greek, Cyrillic, kana, CJK, Arabic...) is rejected by one lookup per character.
static BLOCKS: [u64; 0x11_0000 >> BLOCK >> 6] = blocks();

const fn blocks() -> [u64; 0x11_0000 >> BLOCK >> 6] {
    let mut bits = [0u64; 0x11_0000 >> BLOCK >> 6];
    let mut i = 0;
    while i < table::RUNS.len() {
        let mut b = table::RUNS[i].0 >> BLOCK;
        while b <= table::RUNS[i].1 >> BLOCK {
            bits[(b >> 6) as usize] |= 1 << (b & 63);
            b += 1;
        }
        i += 1;
    }
    i = 0;
    while i < table::MULTI.len() {
        let b = table::MULTI[i].0 >> BLOCK;
        bits[(b >> 6) as usize] |= 1 << (b & 63);
        i += 1;
    }
    bits
}

fn fold(c: char) -> Option<Fold> {
    let cp = u32::from(c);
    // Below U+00A0 nothing folds (ASCII and C1 controls): the common case decides here.
    if cp < 0xA0 {
        return None;
    }
    let block = cp >> BLOCK;
    if BLOCKS[(block >> 6) as usize] & (1 << (block & 63)) == 0 {
        return None;
    }
    let i = table::RUNS.partition_point(|r| r.1 < cp);
    if let Some(&(first, _, to, step)) = table::RUNS.get(i).filter(|r| r.0 <= cp) {
        if to == 0 {
            return Some(Fold::Drop);
        }
        let off = u8::try_from(cp - first).ok()?;
        return step
            .checked_mul(off)
            .and_then(|d| to.checked_add(d))
            .map(Fold::Ascii);
    }
    let i = table::MULTI.binary_search_by_key(&cp, |m| m.0).ok()?;
    Some(Fold::Text(table::MULTI[i].1))
}

/// A normalised copy of a text and, for each of its bytes, the original character it came from.
#[derive(Debug)]
pub struct View {
    /// The text detectors read.
    pub text: String,
    /// Original byte range of the character behind each view byte.
    from: Vec<(u32, u32)>,
}

impl View {
    /// The view of `text`, or `None` when it would be `text` itself: ASCII text, and text with
    /// nothing to fold, cost one pass over the bytes and no copy.
    pub fn of(text: &str) -> Option<View> {
        if text.is_ascii() {
            return None;
        }
        let first = text.char_indices().find(|(_, c)| fold(*c).is_some())?.0;
        let mut v = View {
            text: String::with_capacity(text.len()),
            from: Vec::with_capacity(text.len()),
        };
        v.copy(&text[..first], 0);
        for (i, c) in text[first..].char_indices() {
            let at = first + i;
            let end = at + c.len_utf8();
            match fold(c) {
                None => v.copy(&text[at..end], at),
                Some(Fold::Drop) => {}
                Some(Fold::Ascii(b)) => v.push(char::from(b), at, end),
                Some(Fold::Text(s)) => s.chars().for_each(|x| v.push(x, at, end)),
            }
        }
        Some(v)
    }

    fn copy(&mut self, s: &str, at: usize) {
        for (i, c) in s.char_indices() {
            self.push(c, at + i, at + i + c.len_utf8());
        }
    }

    fn push(&mut self, c: char, start: usize, end: usize) {
        self.text.push(c);
        let span = (offset(start), offset(end));
        self.from.resize(self.text.len(), span);
    }

    /// The original byte range behind the view range `start..end` (`start < end`).
    pub fn original(&self, start: usize, end: usize) -> (usize, usize) {
        let s = self.from.get(start).map_or(0, |r| r.0);
        let e = self.from.get(end.wrapping_sub(1)).map_or(s, |r| r.1);
        (s as usize, e as usize)
    }
}

fn offset(i: usize) -> u32 {
    // Bodies are capped far below 4 GiB (auth's max_body_bytes); saturate rather than wrap.
    u32::try_from(i).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(s: &str) -> String {
        View::of(s).map_or_else(|| s.to_string(), |v| v.text)
    }

    #[test]
    fn plain_text_needs_no_view() {
        assert!(View::of("jane@example.com 4111 1111").is_none());
        assert!(View::of("café, 東京, Ελληνικά, привет").is_none());
    }

    #[test]
    fn invisible_characters_are_dropped() {
        assert_eq!(view("ja\u{200B}ne@ex\u{200D}ample.com"), "jane@example.com");
        assert_eq!(view("41\u{FEFF}11\u{AD}11\u{2060}11"), "41111111");
        assert_eq!(view("a\u{202E}b\u{FE0F}c"), "abc");
    }

    #[test]
    fn compatibility_forms_read_as_ascii() {
        assert_eq!(view("ｊａｎｅ＠ｅｘａｍｐｌｅ．ｃｏｍ"), "jane@example.com");
        assert_eq!(view("４１１１\u{3000}１１１１"), "4111 1111");
        assert_eq!(view("𝟒𝟏𝟏𝟏 ①②³"), "4111 123");
        assert_eq!(view("⑴ ⒈ ﬀ"), "(1) 1. ff");
        assert_eq!(view("4111\u{A0}1111"), "4111 1111");
    }

    #[test]
    fn tag_characters_read_as_the_ascii_they_shadow() {
        let tagged: String = "a@x.com"
            .chars()
            .map(|c| char::from_u32(0xE0000 + u32::from(c)).unwrap())
            .collect();
        assert_eq!(view(&tagged), "a@x.com");
    }

    #[test]
    fn every_table_entry_is_reached_through_the_block_map() {
        for &(first, last, ..) in &table::RUNS {
            for cp in first..=last {
                let c = char::from_u32(cp).unwrap();
                assert!(fold(c).is_some(), "U+{cp:04X}");
            }
        }
        for &(cp, _) in &table::MULTI {
            assert!(fold(char::from_u32(cp).unwrap()).is_some(), "U+{cp:04X}");
        }
    }

    #[test]
    fn other_scripts_are_kept_beside_folded_characters() {
        assert_eq!(view("東京 ４ é"), "東京 4 é");
    }

    #[test]
    fn view_ranges_map_to_the_original_characters() {
        let s = "mail ｊ\u{200B}a@x.com now";
        let v = View::of(s).unwrap();
        let at = v.text.find("ja@x.com").unwrap();
        let (a, b) = v.original(at, at + "ja@x.com".len());
        assert_eq!(&s[a..b], "ｊ\u{200B}a@x.com");
        let one = View::of("x ⑴ y").unwrap();
        assert_eq!(one.original(3, 4), (2, 5));
    }
}
