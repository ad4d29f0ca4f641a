"""Every sentence the bot shows to users, in one place."""

from __future__ import annotations

PRIVACY = (
    "**What moodring does with your photo**\n"
    "• Your selfie is sent to a moodring worker, which finds faces and estimates an emotion with an "
    "AI model (a ResNet50 trained on the FER2013 dataset). It can be wrong, and it reads facial "
    "expressions, not feelings.\n"
    "• The photo is held in memory only while it is analysed and deleted right after. It is never "
    "written to disk, logs or the database, and neither is the heatmap or the attachment link.\n"
    "• What is kept: the emotion label, its probabilities and the time, for your `/mood` history "
    "(90 days by default). `/mood export` shows all of it; `/mood forget` deletes all of it."
)
