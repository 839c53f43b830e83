//! Consent purposes of DiGAV §4(2) and the check every data route makes before it stores
//! health data. The register itself (texts, grants, withdrawals, history) is the `privacy`
//! function's; the functions that store health data only read the newest event per purpose.

use crate::error::Problem;
use serde::{Deserialize, Serialize};

/// A processing purpose of DiGAV §4(2) sentence 1; each is consented to on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// Nr. 1: the intended use (the therapy). Required before any health data are stored.
    IntendedUse,
    /// Nr. 2: proving positive care effects during a trial (§139e(4) SGB V).
    CareEffectEvidence,
    /// Nr. 3: evidence for performance-based price components (§134(1) S.3 SGB V).
    PriceEvidence,
    /// Nr. 4: technical functioning, user-friendliness and further development; by law a
    /// consent separate from Nr. 1–3.
    ProductImprovement,
}

impl Purpose {
    /// Every purpose, in the order of §4(2).
    pub const ALL: [Purpose; 4] = [
        Purpose::IntendedUse,
        Purpose::CareEffectEvidence,
        Purpose::PriceEvidence,
        Purpose::ProductImprovement,
    ];

    /// The stored name (`consent_texts.purpose`).
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::IntendedUse => "intended_use",
            Purpose::CareEffectEvidence => "care_effect_evidence",
            Purpose::PriceEvidence => "price_evidence",
            Purpose::ProductImprovement => "product_improvement",
        }
    }

    /// The purpose of a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// 403 naming the consent that is missing.
pub fn missing(purpose: Purpose) -> Problem {
    Problem::new(
        403,
        "consent_required",
        format!(
            "this needs your consent to the purpose {}; grant it with POST /v1/me/consents",
            purpose.as_str()
        ),
    )
    .with_field(purpose.as_str())
}

/// Whether the user's newest event for `purpose` is a grant.
#[cfg(feature = "db")]
pub async fn granted<'e, E: sqlx::PgExecutor<'e>>(
    ex: E,
    user: uuid::Uuid,
    purpose: Purpose,
) -> Result<bool, sqlx::Error> {
    let action: Option<String> = sqlx::query_scalar(
        "SELECT action FROM consent_events WHERE user_id = $1 AND purpose = $2 ORDER BY id DESC LIMIT 1",
    )
    .bind(user)
    .bind(purpose.as_str())
    .fetch_optional(ex)
    .await?;
    Ok(action.as_deref() == Some("granted"))
}

/// The check of a data route: `Ok(Err(403))` when the consent is missing (401 when the
/// account is gone), so a handler writes `consent::require(&pool, user, purpose).await??`.
#[cfg(feature = "db")]
pub async fn require<'e, E: sqlx::PgExecutor<'e>>(
    ex: E,
    user: uuid::Uuid,
    purpose: Purpose,
) -> Result<Result<(), Problem>, sqlx::Error> {
    let row: Option<(Option<String>,)> = sqlx::query_as(
        "SELECT e.action FROM users u LEFT JOIN LATERAL (SELECT action FROM consent_events \
         WHERE user_id = u.id AND purpose = $2 ORDER BY id DESC LIMIT 1) e ON true WHERE u.id = $1",
    )
    .bind(user)
    .bind(purpose.as_str())
    .fetch_optional(ex)
    .await?;
    Ok(match row {
        None => Err(Problem::unauthorized()),
        Some((Some(action),)) if action == "granted" => Ok(()),
        Some(_) => Err(missing(purpose)),
    })
}

/// Records a grant of the newest text version of `purpose` (tests and the register).
#[cfg(feature = "db")]
pub async fn grant_current<'e, E: sqlx::PgExecutor<'e>>(
    ex: E,
    user: uuid::Uuid,
    purpose: Purpose,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO consent_events (user_id, purpose, version, action) \
         SELECT $1, purpose, max(version), 'granted' FROM consent_texts WHERE purpose = $2 GROUP BY purpose",
    )
    .bind(user)
    .bind(purpose.as_str())
    .execute(ex)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_purpose_round_trips_through_its_stored_name() {
        for p in Purpose::ALL {
            assert_eq!(Purpose::parse(p.as_str()), Some(p));
        }
        assert_eq!(Purpose::parse("advertising"), None);
    }

    #[test]
    fn a_missing_consent_is_a_403_naming_the_purpose() {
        let p = missing(Purpose::IntendedUse);
        assert_eq!(p.status, 403);
        assert_eq!(p.code, "consent_required");
        assert_eq!(p.field.as_deref(), Some("intended_use"));
    }
}
