"""Serving: photo bytes → faces → ResNet50 + Grad-CAM → reason and heatmap (torch lives here)."""
