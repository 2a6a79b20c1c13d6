//! Geography of US cities, as feature functions.
//!
//! `coastal(city)` says whether a city lies on a sea coast (the Atlantic,
//! the Pacific, the Gulf of Mexico) or on a tidal bay or sound open to one;
//! `region(city)` gives its census region. Both compare names without regard
//! to case or surrounding spaces; an unknown city is not coastal and has no
//! region.

/// (city, coastal, census region)
const CITIES: &[(&str, bool, &str)] = &[
    ("Anchorage", true, "West"),
    ("Atlanta", false, "South"),
    ("Austin", false, "South"),
    ("Baltimore", true, "South"),
    ("Boston", true, "Northeast"),
    ("Charleston", true, "South"),
    ("Charlotte", false, "South"),
    ("Chicago", false, "Midwest"),
    ("Cleveland", false, "Midwest"),
    ("Columbus", false, "Midwest"),
    ("Dallas", false, "South"),
    ("Denver", false, "West"),
    ("Detroit", false, "Midwest"),
    ("Honolulu", true, "West"),
    ("Houston", true, "South"),
    ("Indianapolis", false, "Midwest"),
    ("Jacksonville", true, "South"),
    ("Kansas City", false, "Midwest"),
    ("Las Vegas", false, "West"),
    ("Los Angeles", true, "West"),
    ("Miami", true, "South"),
    ("Minneapolis", false, "Midwest"),
    ("Nashville", false, "South"),
    ("New Orleans", true, "South"),
    ("New York", true, "Northeast"),
    ("Oakland", true, "West"),
    ("Philadelphia", false, "Northeast"),
    ("Phoenix", false, "West"),
    ("Pittsburgh", false, "Northeast"),
    ("Portland", false, "West"),
    ("Providence", true, "Northeast"),
    ("Salt Lake City", false, "West"),
    ("San Antonio", false, "South"),
    ("San Diego", true, "West"),
    ("San Francisco", true, "West"),
    ("San Jose", false, "West"),
    ("Seattle", true, "West"),
    ("St. Louis", false, "Midwest"),
    ("Tampa", true, "South"),
    ("Tucson", false, "West"),
    ("Virginia Beach", true, "South"),
    ("Washington", false, "South"),
];

fn find(city: &str) -> Option<&'static (&'static str, bool, &'static str)> {
    let city = city.trim();
    CITIES
        .iter()
        .find(|(name, _, _)| name.eq_ignore_ascii_case(city))
}

mlp_plugin::export! {
    /// Whether the city lies on a sea coast.
    pub fn coastal(city: &str) -> bool {
        find(city).is_some_and(|c| c.1)
    }

    /// The city's census region (`Northeast`, `Midwest`, `South`, `West`),
    /// or null for a city this plugin does not know.
    pub fn region(city: Option<&str>) -> Option<&'static str> {
        city.and_then(find).map(|c| c.2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coasts_and_regions() {
        assert!(coastal("Boston"));
        assert!(coastal(" seattle "));
        assert!(!coastal("Denver"));
        assert!(!coastal("Atlantis"));
        assert_eq!(region(Some("Tucson")), Some("West"));
        assert_eq!(region(Some("Atlantis")), None);
        assert_eq!(region(None), None);
    }
}
