//! SMS shape: which encoding an SMS body needs and how many segments carriers will split it
//! into, which is what the recipient's operator bills for.
//!
//! A body that fits the GSM 03.38 7-bit default alphabet (3GPP TS 23.038), with its extension
//! table, goes as GSM-7: 160 septets in a single message, 153 per segment once it has to be
//! concatenated (the user data header takes the rest). Anything else goes as UCS-2 (UTF-16 on
//! the wire): 70 code units alone, 67 per segment. Neither an escape pair nor a surrogate pair
//! may be split across segments, so one that would straddle a boundary starts the next segment.

use herald_contracts::SmsEncoding;

/// GSM 03.38 escape to the extension table; it is not a character of its own.
const ESCAPE: char = '\u{1B}';

/// The basic GSM 03.38 alphabet, indexed by septet value. Slot 0x1B is the escape to the
/// extension table.
#[rustfmt::skip]
const GSM7_BASIC: [char; 128] = [
    // 0x00
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å',
    // 0x10
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', ESCAPE, 'Æ', 'æ', 'ß', 'É',
    // 0x20
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/',
    // 0x30
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?',
    // 0x40
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O',
    // 0x50
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§',
    // 0x60
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o',
    // 0x70
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à',
];

/// The extension table's characters, each sent as the escape septet followed by its own.
const GSM7_EXTENSION: [char; 10] = ['\u{0C}', '^', '{', '}', '\\', '[', '~', ']', '|', '€'];

/// Septets a GSM-7 body may use in a single, unconcatenated message.
const GSM7_SINGLE: u32 = 160;
/// Septets per segment of a concatenated GSM-7 message.
const GSM7_SEGMENT: u32 = 153;
/// UTF-16 code units a UCS-2 body may use in a single message.
const UCS2_SINGLE: u32 = 70;
/// UTF-16 code units per segment of a concatenated UCS-2 message.
const UCS2_SEGMENT: u32 = 67;

/// The encoding an SMS body needs and how many segments it takes.
pub fn sms_shape(text: &str) -> (SmsEncoding, u32) {
    let septets: Option<Vec<u32>> = text.chars().map(gsm7_septets).collect();
    match septets {
        Some(widths) => (
            SmsEncoding::Gsm7,
            segments(&widths, GSM7_SINGLE, GSM7_SEGMENT),
        ),
        None => {
            // len_utf16 is 1 or 2, so the cast cannot truncate.
            let units: Vec<u32> = text.chars().map(|c| c.len_utf16() as u32).collect();
            (
                SmsEncoding::Ucs2,
                segments(&units, UCS2_SINGLE, UCS2_SEGMENT),
            )
        }
    }
}

/// Septets `c` takes in GSM-7: 1 from the basic table, 2 from the extension table, None if it
/// cannot be sent in GSM-7 at all.
pub fn gsm7_septets(c: char) -> Option<u32> {
    if c != ESCAPE && GSM7_BASIC.contains(&c) {
        Some(1)
    } else if GSM7_EXTENSION.contains(&c) {
        Some(2)
    } else {
        None
    }
}

/// Segments needed for characters of the given widths: one if they all fit in `single`,
/// otherwise packed into `per_segment`-sized segments with no character split across two.
fn segments(widths: &[u32], single: u32, per_segment: u32) -> u32 {
    let total: u32 = widths.iter().sum();
    if total <= single {
        return 1;
    }
    let mut count = 1;
    let mut used = 0;
    for &width in widths {
        if used + width > per_segment {
            count += 1;
            used = 0;
        }
        used += width;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gsm(n: usize) -> String {
        "a".repeat(n)
    }

    #[test]
    fn empty_text_is_one_gsm7_segment() {
        assert_eq!(sms_shape(""), (SmsEncoding::Gsm7, 1));
    }

    #[test]
    fn gsm7_segment_boundaries() {
        assert_eq!(sms_shape(&gsm(1)), (SmsEncoding::Gsm7, 1));
        assert_eq!(sms_shape(&gsm(160)), (SmsEncoding::Gsm7, 1));
        assert_eq!(sms_shape(&gsm(161)), (SmsEncoding::Gsm7, 2));
        assert_eq!(sms_shape(&gsm(306)), (SmsEncoding::Gsm7, 2));
        assert_eq!(sms_shape(&gsm(307)), (SmsEncoding::Gsm7, 3));
        assert_eq!(sms_shape(&gsm(459)), (SmsEncoding::Gsm7, 3));
        assert_eq!(sms_shape(&gsm(460)), (SmsEncoding::Gsm7, 4));
    }

    #[test]
    fn extension_characters_count_two_septets() {
        assert_eq!(gsm7_septets('€'), Some(2));
        assert_eq!(gsm7_septets('a'), Some(1));
        // 158 + 2 = 160 septets fits one message; 159 + 2 = 161 does not.
        assert_eq!(sms_shape(&format!("{}€", gsm(158))), (SmsEncoding::Gsm7, 1));
        assert_eq!(sms_shape(&format!("{}€", gsm(159))), (SmsEncoding::Gsm7, 2));
        // 80 braces are 160 septets; 81 are 162.
        assert_eq!(sms_shape(&"{".repeat(80)), (SmsEncoding::Gsm7, 1));
        assert_eq!(sms_shape(&"{".repeat(81)), (SmsEncoding::Gsm7, 2));
    }

    #[test]
    fn every_extension_character_is_gsm7_and_costs_two() {
        for c in ['\u{0C}', '^', '{', '}', '\\', '[', '~', ']', '|', '€'] {
            assert_eq!(gsm7_septets(c), Some(2), "{c:?}");
        }
    }

    #[test]
    fn an_escape_pair_does_not_straddle_segments() {
        // 152 + 2 + 152 = 306 septets, which would be two full segments if the pair could be
        // split; instead the euro starts segment two (2 + 151) and one 'a' spills into three.
        let text = format!("{}€{}", gsm(152), gsm(152));
        assert_eq!(sms_shape(&text), (SmsEncoding::Gsm7, 3));
        // 151 + 2 fills the first segment exactly, so nothing moves.
        let text = format!("{}€{}", gsm(151), gsm(153));
        assert_eq!(sms_shape(&text), (SmsEncoding::Gsm7, 2));
    }

    #[test]
    fn the_whole_basic_table_is_gsm7() {
        let basic = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
                     ¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
        assert_eq!(basic.chars().count(), 127);
        for c in basic.chars() {
            assert_eq!(gsm7_septets(c), Some(1), "{c:?}");
        }
        // 127 septets: one segment.
        assert_eq!(sms_shape(basic), (SmsEncoding::Gsm7, 1));
    }

    #[test]
    fn the_basic_table_has_no_duplicates() {
        let mut sorted = GSM7_BASIC.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 128);
        for c in GSM7_EXTENSION {
            assert!(!GSM7_BASIC.contains(&c), "{c:?} is in both tables");
        }
    }

    #[test]
    fn characters_outside_gsm7_force_ucs2() {
        // Only the capital C with cedilla is in the basic table.
        assert_eq!(gsm7_septets('Ç'), Some(1));
        assert_eq!(gsm7_septets('ç'), None);
        assert_eq!(sms_shape("Français ç"), (SmsEncoding::Ucs2, 1));
        for c in [
            'ç', 'á', 'í', 'ó', 'ú', 'â', 'ê', 'ô', 'È', 'Ú', '`', '\t', ESCAPE, 'ж',
        ] {
            assert_eq!(gsm7_septets(c), None, "{c:?}");
        }
        // '$' is in the table at 0x02 but the look-alike currency signs are not.
        assert_eq!(gsm7_septets('¢'), None);
        // The Ohm sign is not the Greek capital omega.
        assert_eq!(gsm7_septets('\u{2126}'), None);
        assert_eq!(gsm7_septets('\u{03A9}'), Some(1));
    }

    #[test]
    fn an_emoji_forces_ucs2() {
        assert_eq!(sms_shape("Your parcel is here 📦"), (SmsEncoding::Ucs2, 1));
    }

    #[test]
    fn ucs2_segment_boundaries() {
        let ucs2 = |n: usize| "ж".repeat(n);
        assert_eq!(sms_shape(&ucs2(70)), (SmsEncoding::Ucs2, 1));
        assert_eq!(sms_shape(&ucs2(71)), (SmsEncoding::Ucs2, 2));
        assert_eq!(sms_shape(&ucs2(134)), (SmsEncoding::Ucs2, 2));
        assert_eq!(sms_shape(&ucs2(135)), (SmsEncoding::Ucs2, 3));
        // One non-GSM character makes the whole body UCS-2: 160 GSM letters no longer fit.
        assert_eq!(sms_shape(&format!("{}ç", gsm(159))), (SmsEncoding::Ucs2, 3));
    }

    #[test]
    fn emoji_count_two_code_units() {
        // 35 emoji are 70 code units: one message; 36 are 72.
        assert_eq!(sms_shape(&"😀".repeat(35)), (SmsEncoding::Ucs2, 1));
        assert_eq!(sms_shape(&"😀".repeat(36)), (SmsEncoding::Ucs2, 2));
    }

    #[test]
    fn a_surrogate_pair_does_not_straddle_segments() {
        // 66 + 2 + 66 = 134 units would be two full segments if the pair could be split;
        // instead the emoji starts segment two (2 + 65) and one letter spills into three.
        let text = format!("{}😀{}", "ж".repeat(66), "ж".repeat(66));
        assert_eq!(sms_shape(&text), (SmsEncoding::Ucs2, 3));
        // 65 + 2 fills the first segment exactly.
        let text = format!("{}😀{}", "ж".repeat(65), "ж".repeat(67));
        assert_eq!(sms_shape(&text), (SmsEncoding::Ucs2, 2));
    }
}
