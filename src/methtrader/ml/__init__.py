"""Machine-learning models: features built from bars, content-addressed feature blobs, and models
trained with scikit-learn and tracked in MLflow. Nothing here imports MLflow until it is used."""
