//! Numeric features over several columns.

/// Mean Earth radius in kilometres (IUGG).
const EARTH_RADIUS_KM: f64 = 6371.0088;

mlp_plugin::export! {
    /// Great-circle distance in kilometres between two points given in
    /// degrees (the haversine formula).
    pub fn haversine(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
        let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
        let dp = p2 - p1;
        let dl = (lon2 - lon1).to_radians();
        let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_KM * a.sqrt().asin()
    }

    /// The Box-Cox transform of a positive `x` with parameter `lambda`
    /// (`ln x` when `lambda` is 0); null for `x <= 0`, where it is undefined.
    /// `lambda = 0.5` and `1` take the exact forms (a correctly rounded
    /// square root; `x - 1`) rather than the general power.
    pub fn box_cox(x: f64, lambda: f64) -> Option<f64> {
        if x <= 0.0 {
            None
        } else if lambda == 0.0 {
            Some(x.ln())
        } else if lambda == 0.5 {
            Some((x.sqrt() - 1.0) / 0.5)
        } else if lambda == 1.0 {
            Some(x - 1.0)
        } else {
            Some((x.powf(lambda) - 1.0) / lambda)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_and_transforms() {
        // Paris to London, about 344 km.
        let d = haversine(48.8566, 2.3522, 51.5074, -0.1278);
        assert!((d - 343.5).abs() < 1.0, "{d}");
        assert_eq!(haversine(1.0, 2.0, 1.0, 2.0), 0.0);
        assert_eq!(box_cox(1.0, 0.5), Some(0.0));
        assert_eq!(box_cox(-1.0, 0.5), None);
        assert_eq!(box_cox(std::f64::consts::E, 0.0), Some(1.0));
    }
}
