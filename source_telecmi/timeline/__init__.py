"""Time, the one place of millisecond arithmetic: instants and days (`instants`), windows cut by
density (`planning`), and where a sync starts again (`resuming`)."""
