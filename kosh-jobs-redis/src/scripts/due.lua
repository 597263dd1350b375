-- due: when something in this queue may next become ready by itself (see next_due).
return next_due()
