"""Trainable head designs without published weights: found when named, never run by default (see ``loader``)."""
