-- Version 2 of the consent to the intended use. Version 1 said that after a withdrawal the
-- patient *can* delete the account; the withdrawal itself erases it (the only legal ground of
-- the processing is gone, GDPR Art. 17(1)(b); privacy `DELETE /v1/me/consents/intended_use`).
-- Consent texts are never edited: the corrected wording is a new version, and a grant must name
-- the version in force.
INSERT INTO consent_texts (purpose, version, title, body) VALUES
('intended_use', 2, 'Verarbeitung Ihrer Gesundheitsdaten für die Therapie',
 'Ich willige ein, dass dta-wide meine Gesundheitsdaten (Schlaftagebuch, importierte Schlafdaten von Wearables, Fragebogenantworten und daraus berechnete Werte) verarbeitet, um mir die Therapie der Insomnie bereitzustellen (§ 4 Abs. 2 Satz 1 Nr. 1 DiGAV, Art. 9 Abs. 2 lit. a DSGVO). Ohne diese Einwilligung kann die App keine Gesundheitsdaten speichern. Ich kann die Einwilligung jederzeit widerrufen. Mit dem Widerruf entfällt die Grundlage der Verarbeitung: Mein Konto und alle meine Gesundheitsdaten werden dann gelöscht (Art. 17 Abs. 1 lit. b DSGVO). Die Rechtmäßigkeit der Verarbeitung bis zum Widerruf bleibt unberührt (Art. 7 Abs. 3 DSGVO). Vor dem Widerruf kann ich meine Daten exportieren (Art. 15 und 20 DSGVO).');
