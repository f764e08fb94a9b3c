//! Why a rule could not read a field (the `reason` of
//! `loupe_rule_errors_total`), shared by the body decoder and the
//! evaluation.

/// Why a rule could not read something (the rule-error self-metric's
/// `reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleError {
    /// The body was not captured (not kept, or written before capture);
    /// never said of a message that has no body.
    NotCaptured,
    /// The body was longer than the limit or the capture, and the field
    /// was not in the part seen.
    Truncated,
    MalformedJson,
    /// A compressed body that could not be decoded (corrupt, or a coding
    /// loupe does not decode).
    Encoding,
    MissingField,
    NotNumeric,
}

impl RuleError {
    pub const ALL: [Self; 6] = [
        Self::NotCaptured,
        Self::Truncated,
        Self::MalformedJson,
        Self::Encoding,
        Self::MissingField,
        Self::NotNumeric,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::NotCaptured => "not_captured",
            Self::Truncated => "truncated",
            Self::MalformedJson => "malformed_json",
            Self::Encoding => "encoding",
            Self::MissingField => "missing_field",
            Self::NotNumeric => "not_numeric",
        }
    }
}
