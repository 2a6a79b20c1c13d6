//! Loops forever on every row: the host's fuel or its timeout must stop it.

mlp_plugin::export! {
    pub fn spin(x: f64) -> f64 {
        let mut acc = x;
        loop {
            acc = std::hint::black_box(acc * 1.000001 + 1.0);
            if std::hint::black_box(acc.is_nan() && acc > 0.0) {
                return acc;
            }
        }
    }
}
