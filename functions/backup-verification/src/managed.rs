//! The production drill on Cloud SQL: the managed-backup check, then the newest successful
//! backup run restored into the scratch instance through the Admin API, then the checks of the
//! local drill that need no dump file, on the restored copy: every table of the source present,
//! row counts, the schema's invariants, erased users absent.

use chrono::{DateTime, Utc};
use sqlx::{Connection as _, PgConnection};

use crate::cloudsql::{self, CloudSqlAdmin, RestoreSettings};
use crate::drill::{DrillError, Limits, Verification};

/// What the managed drill needs besides the Admin API.
#[derive(Debug, Clone)]
pub struct ManagedDrill<'a> {
    /// The live database (expected tables, foreign keys).
    pub source_url: &'a str,
    /// The restored database on the scratch instance.
    pub scratch_url: &'a str,
    /// Scratch instance, deadline, poll interval.
    pub restore: &'a RestoreSettings,
    /// Age and RTO limits.
    pub limits: &'a Limits,
    /// The live erasure ledger's pseudonyms.
    pub ledger: &'a [String],
}

/// Runs the check and, when it passes, the restore drill. Findings go into the returned
/// verification's `failures`; an error means the drill itself could not run.
pub async fn verify(
    admin: &impl CloudSqlAdmin,
    drill: &ManagedDrill<'_>,
    now: DateTime<Utc>,
) -> Result<Verification, DrillError> {
    let mut v = Verification {
        backup_id: "none".into(),
        ..Default::default()
    };
    let managed = match cloudsql::verify(admin, now, drill.limits.max_age).await {
        Ok(managed) => managed,
        Err(e) => {
            v.failures.push(e.to_string());
            return Ok(v);
        }
    };
    let Some(run) = managed.newest.clone() else {
        v.failures = managed.failures;
        return Ok(v);
    };
    v.backup_id = run.id.clone();
    v.taken_at = run.end_time;
    if let Some(end) = run.end_time {
        v.age_hours = (now - end).num_seconds() as f64 / 3600.0;
    }
    if !managed.failures.is_empty() {
        v.failures = managed.failures;
        v.failures
            .push("restore drill not run: the managed-backup check failed".into());
        return Ok(v);
    }

    let restored = match cloudsql::restore(admin, &run, drill.restore).await {
        Ok(restored) => restored,
        Err(e) => {
            v.failures.push(e.to_string());
            return Ok(v);
        }
    };
    let restore = restored.elapsed;
    v.restore_operation = Some(restored.operation);
    v.restore_secs = Some(restore.as_secs_f64());
    if restore > drill.limits.rto {
        v.failures.push(format!(
            "restore took {:.0} s, more than the RTO of {} s",
            restore.as_secs_f64(),
            drill.limits.rto.as_secs()
        ));
    }

    let clock = std::time::Instant::now();
    let mut source = PgConnection::connect(drill.source_url).await?;
    let expected = crate::drill::tables(&mut source).await?;
    let foreign_keys: i64 = sqlx::query_scalar(crate::drill::FOREIGN_KEYS_SQL)
        .fetch_one(&mut source)
        .await?;
    let _ = source.close().await;

    let mut conn = PgConnection::connect(drill.scratch_url).await?;
    let restored_tables = crate::drill::tables(&mut conn).await?;
    for table in &expected {
        if !restored_tables.contains(table) {
            v.failures
                .push(format!("table {table} missing from the restored database"));
            continue;
        }
        // The name comes from the catalog, quoted by `quote_ident`.
        let rows: i64 = sqlx::query_scalar(&["SELECT count(*) FROM ", table].concat())
            .fetch_one(&mut conn)
            .await?;
        v.tables += 1;
        v.rows += rows;
    }
    for table in restored_tables.iter().filter(|t| !expected.contains(t)) {
        v.failures.push(format!(
            "table {table} restored but not in the source database"
        ));
    }
    // The source moved on since the backup, so counts are not compared table by table; a
    // restore without a single row while the source has rows is a bad backup.
    if v.rows == 0 {
        let mut source = PgConnection::connect(drill.source_url).await?;
        let mut source_rows = 0i64;
        for table in &expected {
            let sql = ["SELECT count(*) FROM ", table].concat();
            source_rows += sqlx::query_scalar::<_, i64>(&sql)
                .fetch_one(&mut source)
                .await?;
        }
        let _ = source.close().await;
        if source_rows > 0 {
            v.failures.push(format!(
                "the restored database holds no rows, the source {source_rows}"
            ));
        }
    }
    for finding in crate::drill::invariants(&mut conn, foreign_keys).await? {
        v.failures.push(finding);
    }
    v.reclean_erased(&mut conn, drill.ledger).await?;
    let _ = conn.close().await;
    v.compare_secs = clock.elapsed().as_secs_f64();
    Ok(v)
}
