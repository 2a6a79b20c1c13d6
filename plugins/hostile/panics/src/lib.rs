//! Panics on a negative input: the message and the row must reach the user.

mlp_plugin::export! {
    pub fn checked_sqrt(x: f64) -> f64 {
        if x < 0.0 {
            panic!("cannot take the square root of {x}");
        }
        x.sqrt()
    }
}
