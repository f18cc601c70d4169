"""Search → focal stack → merge → depth, and the settings that drive them; never imports training/."""
