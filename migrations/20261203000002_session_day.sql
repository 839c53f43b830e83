-- What a source states beyond its segments: the day it files a period under (Fitbit
-- dateOfSleep, Oura day) and its own stage totals (Oura sums 30-second data).
ALTER TABLE sleep_sessions ADD COLUMN source_day date;
ALTER TABLE sleep_sessions ADD COLUMN stated jsonb;
