-- The Consensus Sleep Diary has one morning entry per night; a second entry for the same night
-- is an edit of the first, not a new record.
CREATE UNIQUE INDEX diary_entries_user_night_key ON diary_entries (user_id, night);
DROP INDEX diary_entries_user_night;
