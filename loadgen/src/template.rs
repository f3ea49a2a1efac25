//! Topic templates: `bench/%i/data` with placeholders filled per client or
//! per message.
//!
//! - `%i`: the client's index (with `--id-offset` added),
//! - `%c`: the core (executor) the client runs on,
//! - `%r`: a random number below the group's client count, drawn per message,
//! - `%n`: the message's sequence number (used to spread retained messages),
//! - `%%`: a literal `%`.
//!
//! A template without `%r` or `%n` is rendered once per client.

use std::fmt::Write;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Index,
    Core,
    Random,
    Seq,
}

/// A parsed topic template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

/// The values a template is rendered with.
#[derive(Debug, Clone, Copy, Default)]
pub struct Vars {
    pub index: u64,
    pub core: usize,
    pub random: u64,
    pub seq: u64,
}

impl Template {
    /// Parses `source`; an unknown `%x` is an error.
    pub fn parse(source: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = source.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                lit.push(c);
                continue;
            }
            let part = match chars.next() {
                Some('%') => {
                    lit.push('%');
                    continue;
                }
                Some('i') => Part::Index,
                Some('c') => Part::Core,
                Some('r') => Part::Random,
                Some('n') => Part::Seq,
                Some(other) => {
                    return Err(format!("unknown placeholder %{other} in {source:?}"));
                }
                None => return Err(format!("trailing % in {source:?}")),
            };
            if !lit.is_empty() {
                parts.push(Part::Lit(std::mem::take(&mut lit)));
            }
            parts.push(part);
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Template {
            source: source.to_string(),
            parts,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// True when the rendered text changes from one message to the next.
    pub fn per_message(&self) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Part::Random | Part::Seq))
    }

    pub fn render(&self, vars: &Vars) -> String {
        let mut out = String::with_capacity(self.source.len() + 8);
        for part in &self.parts {
            match part {
                Part::Lit(s) => out.push_str(s),
                Part::Index => write!(out, "{}", vars.index).unwrap(),
                Part::Core => write!(out, "{}", vars.core).unwrap(),
                Part::Random => write!(out, "{}", vars.random).unwrap(),
                Part::Seq => write!(out, "{}", vars.seq).unwrap(),
            }
        }
        out
    }
}

/// A small, fast, seedable generator (xorshift64*) for `%r` and run ids.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..bound` (`bound` 0 is treated as 1).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_placeholders() {
        let t = Template::parse("a/%i/%c/x%%y").unwrap();
        assert!(!t.per_message());
        let vars = Vars {
            index: 12,
            core: 1,
            ..Vars::default()
        };
        assert_eq!(t.render(&vars), "a/12/1/x%y");
    }

    #[test]
    fn random_and_seq_are_per_message() {
        let t = Template::parse("t/%r/%n").unwrap();
        assert!(t.per_message());
        let vars = Vars {
            random: 3,
            seq: 9,
            ..Vars::default()
        };
        assert_eq!(t.render(&vars), "t/3/9");
    }

    #[test]
    fn rejects_unknown_placeholders() {
        assert!(Template::parse("a/%q").is_err());
        assert!(Template::parse("a/%").is_err());
    }

    #[test]
    fn rng_stays_below_bound() {
        let mut rng = Rng::new(1);
        for _ in 0..1000 {
            assert!(rng.below(10) < 10);
        }
    }
}
