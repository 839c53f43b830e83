-- Consent register (DiGAV §4(2), GDPR Art. 7 and 9(2)(a), TR-03161-3 O.Purp_2-5).
-- Every consent text is versioned and never changed once published; a new wording is a new
-- version. A user's grants and withdrawals are appended, never updated: the newest event per
-- purpose is the current state, and the whole list is the history the user can retrieve.

CREATE TABLE consent_texts (
    purpose      text NOT NULL CHECK (purpose IN ('intended_use', 'care_effect_evidence', 'price_evidence', 'product_improvement')),
    version      integer NOT NULL CHECK (version > 0),
    title        text NOT NULL,
    body         text NOT NULL,
    published_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (purpose, version)
);

CREATE TABLE consent_events (
    id         bigserial PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose    text NOT NULL,
    version    integer NOT NULL,
    action     text NOT NULL CHECK (action IN ('granted', 'withdrawn')),
    at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    FOREIGN KEY (purpose, version) REFERENCES consent_texts (purpose, version)
);
CREATE INDEX consent_events_current ON consent_events (user_id, purpose, id DESC);

INSERT INTO consent_texts (purpose, version, title, body) VALUES
('intended_use', 1, 'Verarbeitung Ihrer Gesundheitsdaten für die Therapie',
 'Ich willige ein, dass dta-wide meine Gesundheitsdaten (Schlaftagebuch, importierte Schlafdaten von Wearables, Fragebogenantworten und daraus berechnete Werte) verarbeitet, um mir die Therapie der Insomnie bereitzustellen (§ 4 Abs. 2 Satz 1 Nr. 1 DiGAV, Art. 9 Abs. 2 lit. a DSGVO). Ohne diese Einwilligung kann die App keine Gesundheitsdaten speichern. Ich kann die Einwilligung jederzeit widerrufen; danach werden keine neuen Gesundheitsdaten mehr gespeichert, und ich kann mein Konto mit allen Daten löschen.'),
('care_effect_evidence', 1, 'Nachweis positiver Versorgungseffekte',
 'Ich willige ein, dass meine Gesundheitsdaten pseudonymisiert verwendet werden, um positive Versorgungseffekte im Rahmen einer Erprobung nachzuweisen (§ 4 Abs. 2 Satz 1 Nr. 2 DiGAV, § 139e Abs. 4 SGB V). Die Einwilligung ist freiwillig und jederzeit widerrufbar; die Therapie bleibt davon unberührt.'),
('price_evidence', 1, 'Nachweise für Vergütungsvereinbarungen',
 'Ich willige ein, dass meine Gesundheitsdaten pseudonymisiert verwendet werden, um erfolgsabhängige Preisbestandteile nach § 134 Abs. 1 Satz 3 SGB V nachzuweisen (§ 4 Abs. 2 Satz 1 Nr. 3 DiGAV). Die Einwilligung ist freiwillig und jederzeit widerrufbar; die Therapie bleibt davon unberührt.'),
('product_improvement', 1, 'Technische Funktionsfähigkeit, Nutzerfreundlichkeit und Weiterentwicklung',
 'Gesondert von den übrigen Einwilligungen: Ich willige ein, dass meine Daten verwendet werden, um die technische Funktionsfähigkeit und Nutzerfreundlichkeit der App zu gewährleisten und sie weiterzuentwickeln (§ 4 Abs. 2 Satz 1 Nr. 4 DiGAV). Keine Werbung, keine Weitergabe. Die Einwilligung ist freiwillig und jederzeit widerrufbar; die Therapie bleibt davon unberührt.');
