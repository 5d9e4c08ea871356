//! Text for people, shared by the CLI's tables and messages: byte sizes and shortened strings.

/// Bytes for people: "1.5 MiB" (`compact`: "1.5M", for table columns).
pub fn human_bytes(b: u64, compact: bool) -> String {
    let (value, unit) = match b {
        b if b >= 1 << 30 => (b as f64 / f64::from(1u32 << 30), "G"),
        b if b >= 1 << 20 => (b as f64 / f64::from(1u32 << 20), "M"),
        b if b >= 1 << 10 => (b as f64 / 1024.0, "K"),
        b => {
            return if compact {
                format!("{b}B")
            } else {
                format!("{b} B")
            }
        }
    };
    if compact {
        format!("{value:.1}{unit}")
    } else {
        format!("{value:.1} {unit}iB")
    }
}

/// `text` cut to at most `max` characters, ending in `…` when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut t: String = text.chars().take(max.saturating_sub(1)).collect();
    t.push('…');
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_cuts() {
        assert_eq!(human_bytes(512, false), "512 B");
        assert_eq!(human_bytes(3 << 19, false), "1.5 MiB");
        assert_eq!(human_bytes(3 << 19, true), "1.5M");
        assert_eq!(human_bytes(5 << 30, true), "5.0G");
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
    }
}
