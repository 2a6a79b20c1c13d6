//! Every diagnostic code with its documentation (`docs/codes/CODE.md`), for
//! `mlp explain CODE`. A test fails when a code lacks its doc or fixture.

macro_rules! codes {
    ($($code:literal),* $(,)?) => {
        /// `(code, Markdown doc)` for every code the compiler can report.
        pub const CODES: &[(&str, &str)] = &[
            $(($code, include_str!(concat!("../../docs/codes/", $code, ".md")))),*
        ];
    };
}

codes![
    "E0001", "E0002", "E0003", "E0004", "E0005", "E0007", "E0008", "E0009", "E0010", "E0101",
    "E0102", "E0103", "E0105", "E0106", "E0201", "E0202", "E0203", "E0204", "E0205", "E0206",
    "E0207", "E0208", "E0209", "E0210", "E0211", "E0212", "E0301", "E0302", "E0303", "E0304",
    "E0305", "E0401", "E0402", "E0403", "E0404", "E0405", "E0406", "E0501", "E0502", "E0503",
    "E0504", "E0505", "E0506", "E0507", "E0601", "E0602", "E0603", "E0604", "E0605", "E0606",
    "E0607", "E0701", "E0702", "E0703", "E0704", "E0705", "E0706", "E0707", "E0708", "E0709",
    "E0710", "E0711", "W0712", "E0713", "E0714", "E0715", "E0802", "E0803", "E0804", "E0805",
    "E0806", "E0807", "E0808", "E0809", "E0810", "E0811", "W0801",
];

/// The documentation of a code (case-insensitive), or `None`.
pub fn explain(code: &str) -> Option<&'static str> {
    let code = code.trim().to_ascii_uppercase();
    CODES.iter().find(|(c, _)| *c == code).map(|(_, d)| *d)
}
