"""Robot manipulation: a vision-language-action policy trained by next-token prediction (panda-gym)."""
