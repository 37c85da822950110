"""Body poses for the keypoint heads: OpenPose JSON / ``POSE_KEYPOINT`` (`keypoints`), joint
heatmaps as targets and poses read back from readouts (`heatmaps`), and skeleton pictures
(`drawing`). Imports only the top-level shared pieces. Importing the package loads nothing.
"""
