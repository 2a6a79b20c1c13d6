//! Allocates without bound: the host's memory cap must stop it.

mlp_plugin::export! {
    pub fn bomb(x: f64) -> f64 {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(vec![1u8; 1 << 20]);
            if std::hint::black_box(hoard.len() == usize::MAX) {
                return x + hoard.len() as f64;
            }
        }
    }
}
