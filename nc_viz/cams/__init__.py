"""Class activation maps: the method registry (`methods`), the exact CAM and its top-k neurons
from one forward pass, the grad-cam adapter and the display maps (`compute`)."""
