//! The error codes that `RC.*` replies and the HTTP API start with. They are part of the
//! interface: clients match on them, so a code, once published, keeps its meaning.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// Wrong number of arguments (Redis's own wording and code).
    Arity,
    /// An argument is malformed: not a number, not UTF-8, bad identifier, unknown option.
    BadArg,
    /// A value is larger than the configured limit.
    TooLarge,
    /// SHA-256 mismatch: on write nothing is stored; on read the bytes are not returned.
    Checksum,
    /// The key holds another Redis type than the one the command expects.
    WrongType,
    /// A stored record is malformed (changed behind the module's back).
    Corrupt,
    /// A timestamp is too far from the local clock to be accepted.
    ClockSkew,
    /// Fewer replicas answered than the quorum needs, within the timeout.
    NoQuorum,
    /// This node cannot coordinate yet: no cluster topology or node id was loaded.
    NotReady,
    /// A bug: the handler panicked. Redis keeps running and nothing was changed.
    Internal,
}

impl Code {
    /// Every code.
    pub const ALL: [Code; 10] = [
        Code::Arity,
        Code::BadArg,
        Code::TooLarge,
        Code::Checksum,
        Code::WrongType,
        Code::Corrupt,
        Code::ClockSkew,
        Code::NoQuorum,
        Code::NotReady,
        Code::Internal,
    ];

    /// The code an error reply starts with, if it is one of ours.
    pub fn parse(text: &str) -> Option<Code> {
        Code::ALL.into_iter().find(|c| c.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Code::Arity => "ERR",
            Code::BadArg => "BADARG",
            Code::TooLarge => "TOOLARGE",
            Code::Checksum => "CHECKSUM",
            Code::WrongType => "WRONGTYPE",
            Code::Corrupt => "CORRUPT",
            Code::ClockSkew => "CLOCKSKEW",
            Code::NoQuorum => "NOQUORUM",
            Code::NotReady => "NOTREADY",
            Code::Internal => "INTERNAL",
        }
    }
}

/// An error with its code and a message naming the problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodedError {
    pub code: Code,
    pub message: String,
}

impl CodedError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        CodedError {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for CodedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for CodedError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_parses_back() {
        for code in Code::ALL {
            assert_eq!(Code::parse(code.as_str()), Some(code));
        }
        assert_eq!(Code::parse("OOM"), None);
        assert_eq!(Code::parse("badarg"), None);
    }
}
