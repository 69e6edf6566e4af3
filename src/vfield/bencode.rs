//! Bencoding (BEP 3): the value format of BitTorrent's metainfo, extension handshakes
//! and peer exchange. One decoder for every bencoded input V-FIELD reads; it bounds
//! depth and sizes, so a hostile peer cannot make it recurse or allocate without limit.

use std::collections::BTreeMap;

/// Deepest nesting accepted (metainfo needs 5; extension messages 3).
const MAX_DEPTH: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    /// Keys sorted, as bencoding requires (BTreeMap keeps them so when encoding).
    Dict(BTreeMap<Vec<u8>, Value>),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bencode at byte {at}: {what}")]
pub struct DecodeError {
    pub at: usize,
    pub what: &'static str,
}

impl Value {
    pub fn dict<const N: usize>(entries: [(&str, Value); N]) -> Value {
        Value::Dict(entries.into_iter().map(|(k, v)| (k.as_bytes().to_vec(), v)).collect())
    }

    pub fn bytes(data: impl Into<Vec<u8>>) -> Value {
        Value::Bytes(data.into())
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(map) => map.get(key.as_bytes()),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_dict(&self) -> Option<&BTreeMap<Vec<u8>, Value>> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Value::Int(i) => out.extend_from_slice(format!("i{i}e").as_bytes()),
            Value::Bytes(b) => {
                out.extend_from_slice(format!("{}:", b.len()).as_bytes());
                out.extend_from_slice(b);
            }
            Value::List(items) => {
                out.push(b'l');
                items.iter().for_each(|v| v.encode_into(out));
                out.push(b'e');
            }
            Value::Dict(map) => {
                out.push(b'd');
                for (k, v) in map {
                    Value::Bytes(k.clone()).encode_into(out);
                    v.encode_into(out);
                }
                out.push(b'e');
            }
        }
    }
}

/// Decodes one value at the start of `data`; returns it and the bytes it took (BEP 10
/// and BEP 9 messages carry raw bytes after the dictionary).
pub fn decode_prefix(data: &[u8]) -> Result<(Value, usize), DecodeError> {
    let mut parser = Parser { data, at: 0 };
    let value = parser.value(0)?;
    Ok((value, parser.at))
}

/// Decodes exactly one value filling `data`.
pub fn decode(data: &[u8]) -> Result<Value, DecodeError> {
    let (value, used) = decode_prefix(data)?;
    if used != data.len() {
        return Err(DecodeError { at: used, what: "bytes after the value" });
    }
    Ok(value)
}

struct Parser<'a> {
    data: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn fail<T>(&self, what: &'static str) -> Result<T, DecodeError> {
        Err(DecodeError { at: self.at, what })
    }

    fn peek(&self) -> Result<u8, DecodeError> {
        self.data.get(self.at).copied().ok_or(DecodeError { at: self.at, what: "ends early" })
    }

    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        if depth > MAX_DEPTH {
            return self.fail("nested too deep");
        }
        match self.peek()? {
            b'i' => {
                self.at += 1;
                let n = self.integer(b'e')?;
                Ok(Value::Int(n))
            }
            b'l' => {
                self.at += 1;
                let mut items = Vec::new();
                while self.peek()? != b'e' {
                    items.push(self.value(depth + 1)?);
                }
                self.at += 1;
                Ok(Value::List(items))
            }
            b'd' => {
                self.at += 1;
                let mut map = BTreeMap::new();
                let mut last: Option<Vec<u8>> = None;
                while self.peek()? != b'e' {
                    let key = self.string()?;
                    if last.as_ref().is_some_and(|l| l >= &key) {
                        return self.fail("dictionary keys not sorted or repeated");
                    }
                    let value = self.value(depth + 1)?;
                    last = Some(key.clone());
                    map.insert(key, value);
                }
                self.at += 1;
                Ok(Value::Dict(map))
            }
            b'0'..=b'9' => Ok(Value::Bytes(self.string()?)),
            _ => self.fail("not a bencoded value"),
        }
    }

    fn integer(&mut self, end: u8) -> Result<i64, DecodeError> {
        let start = self.at;
        let stop = self.data[start..].iter().position(|&b| b == end).map(|p| start + p);
        let Some(stop) = stop else { return self.fail("integer without end") };
        let text = std::str::from_utf8(&self.data[start..stop]).map_err(|_| DecodeError { at: start, what: "integer not ASCII" })?;
        let digits = text.strip_prefix('-').unwrap_or(text);
        // Canonical: digits only, no leading zero, no "-0".
        let canonical =
            !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) && (digits == "0" || !digits.starts_with('0')) && text != "-0";
        if !canonical {
            return self.fail("integer not canonical");
        }
        let n = text.parse::<i64>().map_err(|_| DecodeError { at: start, what: "integer out of range" })?;
        self.at = stop + 1;
        Ok(n)
    }

    fn string(&mut self) -> Result<Vec<u8>, DecodeError> {
        if !self.peek()?.is_ascii_digit() {
            return self.fail("string length expected");
        }
        let n = self.integer(b':')?;
        let len = usize::try_from(n).map_err(|_| DecodeError { at: self.at, what: "negative string length" })?;
        if len > self.data.len() - self.at {
            return self.fail("string longer than the input");
        }
        let bytes = self.data[self.at..self.at + len].to_vec();
        self.at += len;
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_bep3_examples() {
        for text in [&b"i42e"[..], b"i-3e", b"i0e", b"4:spam", b"0:", b"l4:spami42ee", b"d3:bar4:spam3:fooi42ee", b"de", b"le"] {
            assert_eq!(decode(text).unwrap().encode(), text);
        }
        let v = decode(b"d1:md6:ut_pexi1ee1:pi6881ee").unwrap();
        assert_eq!(v.get("p").and_then(Value::as_int), Some(6881));
        assert_eq!(v.get("m").and_then(|m| m.get("ut_pex")).and_then(Value::as_int), Some(1));
    }

    #[test]
    fn refuses_non_canonical_and_hostile_input() {
        for bad in [
            &b"i03e"[..],
            b"i-0e",
            b"ie",
            b"i1",
            b"5:abc",
            b"d3:foo",
            b"d3:fooi1e3:bari2ee",
            b"d3:fooi1e3:fooi2ee",
            b"x",
            b"99999999999999999999:a",
            b"i1ei2e",
        ] {
            assert!(decode(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let deep = [vec![b'l'; 10_000], vec![b'e'; 10_000]].concat();
        assert_eq!(decode(&deep).unwrap_err().what, "nested too deep");
    }

    #[test]
    fn mutated_inputs_never_panic() {
        let seed = decode(b"d1:ad1:bl1:ci-7eee1:xi9ee").unwrap().encode();
        let mut state = 12345u64;
        for _ in 0..20_000 {
            let mut data = seed.clone();
            for _ in 0..3 {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let at = (state >> 33) as usize % data.len();
                data[at] = (state >> 17) as u8;
            }
            let _ = decode(&data);
        }
    }
}
